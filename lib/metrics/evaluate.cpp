#include "kdistill/metrics/evaluate.h"

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill {

torch::Tensor predict(Model& model, const data::TensorDataset& dataset, int64_t batch_size) {
  check(batch_size >= 1, "predict: batch_size must be >= 1, got ", batch_size);
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const auto device = model.device();
  std::vector<torch::Tensor> outs;
  try {
    for (int64_t i = 0; i < dataset.size(); i += batch_size) {
      const int64_t len = std::min(batch_size, dataset.size() - i);
      outs.push_back(model.forward(dataset.features().narrow(0, i, len).to(device)).cpu());
    }
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  return outs.empty() ? torch::Tensor() : torch::cat(outs);
}

metrics::Evaluation evaluate(Model& model, const data::TensorDataset& dataset, const torch::Tensor& teacher_logits,
                             int64_t batch_size) {
  return metrics::evaluate_logits(predict(model, dataset, batch_size), dataset.targets(), teacher_logits);
}

}  // namespace kdistill
