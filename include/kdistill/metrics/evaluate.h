#pragma once

#include <cstdint>

#include <torch/types.h>

#include "kdistill/data/tensor_dataset.h"
#include "kdistill/metrics/metrics.h"
#include "kdistill/models/model.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// Logits of `model` for every sample of `dataset`, in eval mode and without gradients, computed
/// in batches of `batch_size` on the model's device and returned on the CPU. The model's
/// training mode is restored afterwards.
///
/// Example:
/// ```
/// auto logits = kdistill::predict(student, test);   // [N, C]
/// ```
torch::Tensor predict(Model& model, const data::TensorDataset& dataset, int64_t batch_size = 256);

/// Metrics of `model` on `dataset`; with `teacher_logits` (`[N, C]`) also the agreement.
///
/// Example:
/// ```
/// auto e = kdistill::evaluate(student, test, kdistill::predict(teacher, test));
/// ```
metrics::Evaluation evaluate(Model& model, const data::TensorDataset& dataset,
                             const torch::Tensor& teacher_logits = {}, int64_t batch_size = 256);

}  // namespace kdistill
#pragma GCC visibility pop
