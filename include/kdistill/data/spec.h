#pragma once

#include <string>

#include "kdistill/data/tensor_dataset.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::data {

/// Loads the `split` ("train" or "test") of the data named by a spec string:
/// - `idx:DIR` or a plain `DIR`: an MNIST-family IDX directory (both splits normalised by the
///   training set's mean and standard deviation, as configured runs do);
/// - `hdf5:FILE` or `hdf5:FILE:FEATURES:LABELS`: HDF5 datasets (`x` and `y` by default); the
///   split is ignored (the file is the split).
/// Throws `kdistill::Error` naming the spec when it cannot be parsed.
///
/// Example:
/// ```
/// auto test = kdistill::data::load_spec("idx:/usr/share/datasets/fashion-mnist", "test");
/// ```
TensorDataset load_spec(const std::string& spec, const std::string& split = "train");

}  // namespace kdistill::data
#pragma GCC visibility pop
