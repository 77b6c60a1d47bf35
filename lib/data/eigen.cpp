#include "kdistill/data/eigen.h"

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill::data {

torch::Tensor tensor_view(RowMatrixXf& matrix) {
  return torch::from_blob(matrix.data(), {matrix.rows(), matrix.cols()}, torch::kFloat);
}

torch::Tensor to_tensor(const Eigen::Ref<const Eigen::MatrixXf>& matrix) {
  auto out = torch::empty({matrix.rows(), matrix.cols()}, torch::kFloat);
  Eigen::Map<RowMatrixXf>(out.data_ptr<float>(), matrix.rows(), matrix.cols()) = matrix;
  return out;
}

Eigen::Map<RowMatrixXf> eigen_view(const torch::Tensor& t) {
  check(t.defined() && t.dim() == 2, "eigen_view: expected a 2-D tensor, got ",
        t.defined() ? t.sizes() : torch::IntArrayRef{});
  check(t.scalar_type() == torch::kFloat, "eigen_view: expected float32, got ", t.scalar_type());
  check(t.device().is_cpu(), "eigen_view: the tensor is on ", t.device(), "; move it to the CPU first");
  check(t.is_contiguous(), "eigen_view: the tensor is not contiguous; call .contiguous() first");
  return Eigen::Map<RowMatrixXf>(t.data_ptr<float>(), t.size(0), t.size(1));
}

TensorDataset from_eigen(const Eigen::Ref<const Eigen::MatrixXf>& features, const Eigen::VectorXi& labels,
                         int64_t num_classes, const std::string& name) {
  check(features.rows() == labels.size(), "from_eigen: features has ", features.rows(), " rows but labels has ",
        labels.size(), " entries");
  auto y = torch::empty({labels.size()}, torch::kLong);
  auto* out = y.data_ptr<int64_t>();
  for (Eigen::Index i = 0; i < labels.size(); ++i) out[i] = static_cast<int64_t>(labels[i]);
  return TensorDataset(to_tensor(features), y, num_classes, name);
}

}  // namespace kdistill::data
