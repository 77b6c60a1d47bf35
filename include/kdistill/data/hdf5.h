#pragma once

#include <string>

#include "kdistill/data/tensor_dataset.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::data {

/// Loads a data set from an HDF5 file: features `[N, ...]` (any numeric type, stored as float32)
/// and integer labels `[N]` (-1 = unlabelled) by dataset name.
///
/// A missing file, a file that is not HDF5, a missing dataset or mismatched lengths throw
/// `kdistill::Error` naming the file and the dataset. `num_classes` 0 infers max(label) + 1.
///
/// Example:
/// ```
/// auto train = kdistill::data::load_hdf5("train.h5", "x", "y");
/// ```
TensorDataset load_hdf5(const std::string& path, const std::string& features = "x",
                        const std::string& labels = "y", int64_t num_classes = 0);

/// Writes a data set as HDF5 datasets `features` (float32) and `labels` (int64).
void save_hdf5(const TensorDataset& dataset, const std::string& path, const std::string& features = "x",
               const std::string& labels = "y");

/// SHA-256 (hex) of a data set's features: their shape, dtype and bytes. Labels are left out:
/// teacher logits depend on the inputs only, so a label budget does not change the fingerprint.
std::string features_sha256(const TensorDataset& dataset);

}  // namespace kdistill::data
#pragma GCC visibility pop
