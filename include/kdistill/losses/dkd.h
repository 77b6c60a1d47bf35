#pragma once

#include <torch/arg.h>
#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// Options for `dkd_loss` (the defaults are mdistiller's CIFAR-100 recipe).
///
/// Example:
/// ```
/// auto opts = kdistill::DKDLossOptions().alpha(1).beta(8).temperature(4);
/// ```
struct DKDLossOptions {
  /// Weight of the target-class term TCKD; >= 0.
  TORCH_ARG(double, alpha) = 1.0;
  /// Weight of the non-target-class term NCKD; >= 0.
  TORCH_ARG(double, beta) = 8.0;
  /// Softmax temperature T; > 0.
  TORCH_ARG(double, temperature) = 4.0;
  /// Target value that marks a sample without a label: its target class is the teacher's top class.
  TORCH_ARG(int64_t, ignore_index) = -1;
};

/// Decoupled knowledge distillation (Zhao et al., CVPR 2022). With p = softmax(t / T),
/// q = softmax(s / T) and g the target class of a sample:
///
///   TCKD = KL([p_g, 1 - p_g] || [q_g, 1 - q_g])                  (binary: target vs the rest)
///   NCKD = KL(p^ || q^),  p^_c = p_c / (1 - p_g) for c != g      (among the non-target classes)
///   loss = T^2 * (1/B) * sum_i (alpha * TCKD_i + beta * NCKD_i)
///
/// KD's KL equals TCKD + (1 - p_g) * NCKD: DKD frees NCKD from the (1 - p_g) factor, which
/// shrinks it exactly where the teacher is confident. Computed in log space (1 - p_g as a
/// logsumexp over the other classes). A sample without a label (`ignore_index`) takes the
/// teacher's top class as g. No cross-entropy term: add it (mdistiller uses weight 1, and warms
/// the DKD weight up linearly over 20 epochs; see `DKDObjective`).
///
/// Throws `kdistill::Error` when: logits are not 2-D, differ in shape or have fewer than 2
/// classes; targets are not a 1-D integer tensor of the batch size with values in [0, C) or
/// ignore_index; T <= 0; alpha or beta < 0.
///
/// Example:
/// ```
/// auto s = student(x);
/// auto loss = kdistill::dkd_loss(s, teacher_logits, y) + torch::nn::functional::cross_entropy(s, y);
/// ```
torch::Tensor dkd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                       const torch::Tensor& targets, const DKDLossOptions& options = {});

}  // namespace kdistill
#pragma GCC visibility pop
