#include "kdistill/metrics/evaluate.h"

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/data/tensor_dataset.h"
#include "kdistill/models/model.h"

namespace kdistill {

torch::Tensor predict(Model& model, const data::TensorDataset& dataset, int64_t batch_size) {
  check(batch_size >= 1, "predict: batch_size must be >= 1, got ", batch_size);
  torch::NoGradGuard no_grad;
  TrainingModeGuard<Model> eval(model, false);
  const auto device = model.device();
  return data::map_batches(dataset, batch_size,
                           [&](const torch::Tensor& x, int64_t) { return model.forward(x.to(device)).cpu(); });
}

metrics::Evaluation evaluate(Model& model, const data::TensorDataset& dataset, const torch::Tensor& teacher_logits,
                             int64_t batch_size) {
  return metrics::evaluate_logits(predict(model, dataset, batch_size), dataset.targets(), teacher_logits);
}

}  // namespace kdistill
