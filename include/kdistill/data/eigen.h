#pragma once

#include <Eigen/Core>
#include <torch/types.h>

#include "kdistill/data/tensor_dataset.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::data {

/// Row-major float matrix: one sample per row, the layout tensors use.
using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A tensor `[rows, cols]` viewing the matrix's memory (no copy); the matrix must outlive it.
///
/// Example:
/// ```
/// kdistill::data::RowMatrixXf m = kdistill::data::RowMatrixXf::Random(100, 8);
/// auto t = kdistill::data::tensor_view(m);   // shares m's memory
/// ```
torch::Tensor tensor_view(RowMatrixXf& matrix);

/// A copy of any Eigen float matrix (rows are samples) as a contiguous tensor `[rows, cols]`.
torch::Tensor to_tensor(const Eigen::Ref<const Eigen::MatrixXf>& matrix);

/// A map of a contiguous float32 CPU 2-D tensor as an Eigen row-major matrix (no copy); the
/// tensor must outlive the map. Throws `kdistill::Error` for other dtypes, devices or layouts.
Eigen::Map<RowMatrixXf> eigen_view(const torch::Tensor& tensor);

/// A data set from Eigen: features (rows are samples, copied) and labels (-1 = unlabelled).
TensorDataset from_eigen(const Eigen::Ref<const Eigen::MatrixXf>& features, const Eigen::VectorXi& labels,
                         int64_t num_classes = 0, const std::string& name = "eigen");

}  // namespace kdistill::data
#pragma GCC visibility pop
