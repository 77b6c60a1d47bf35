#pragma once

#include <string>

#include "kdistill/data/tensor_dataset.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::data {

/// The training and test splits of an MNIST-family data set, normalised alike.
struct ImageSplits {
  TensorDataset train;
  TensorDataset test;
  double mean = 0;  ///< training-set pixel mean (pixels scaled to [0, 1])
  double std = 1;   ///< training-set pixel standard deviation
};

/// Default location of Debian's `dataset-fashion-mnist` package.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// Loads an MNIST-family directory (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
/// `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`).
///
/// Images become float `[N, 1, H, W]`, scaled to [0, 1] and normalised by the training set's mean
/// and standard deviation; labels int64 `[N]`. A missing file throws `kdistill::Error` listing the
/// files looked for and, for the default directory, the Debian package that provides them.
///
/// Example:
/// ```
/// auto splits = kdistill::data::load_mnist_family(kdistill::data::kFashionMnistDir, "fashion-mnist");
/// ```
ImageSplits load_mnist_family(const std::string& dir, const std::string& name = "mnist");

/// One split of an MNIST-family directory, normalised exactly as `load_mnist_family` does (by the
/// training set's mean and standard deviation). `split` is "train" or "test"; "train" reads only
/// the two training files, which makes it the quicker choice when the test set is not needed.
///
/// Example:
/// ```
/// auto train = kdistill::data::load_mnist_split(kdistill::data::kFashionMnistDir, "train", "fashion-mnist");
/// ```
TensorDataset load_mnist_split(const std::string& dir, const std::string& split, const std::string& name = "mnist");

}  // namespace kdistill::data
#pragma GCC visibility pop
