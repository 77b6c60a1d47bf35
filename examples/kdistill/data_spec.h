#pragma once

// Data specs on the command line: "idx:DIR", "hdf5:FILE[:FEATURES:LABELS]", or a plain directory
// (an MNIST-family IDX directory).

#include <string>

#include "kdistill/data/tensor_dataset.h"

namespace kdistill::cli {

/// Loads the `split` ("train" or "test") of the data named by `spec`. For idx data both splits
/// are normalised by the training set's statistics, as the trainer's runs do.
data::TensorDataset load_data_spec(const std::string& spec, const std::string& split);

}  // namespace kdistill::cli
