#pragma once

#include <torch/arg.h>
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// Options for `kd_loss` and `KDLoss`.
///
/// Example:
/// ```
/// auto opts = kdistill::KDLossOptions().temperature(4.0).alpha(0.9);
/// ```
struct KDLossOptions {
  /// Softmax temperature T applied to both logits in the soft term; must be > 0.
  TORCH_ARG(double, temperature) = 4.0;
  /// Weight of the soft (teacher) term; the hard (label) term gets 1 - alpha. In [0, 1].
  TORCH_ARG(double, alpha) = 0.9;
  /// Target value that marks a sample without a label (a transfer-set sample): it gets the soft
  /// term only. The hard term is averaged over the labelled samples of the batch.
  TORCH_ARG(int64_t, ignore_index) = -1;
};

/// Hinton et al.'s knowledge-distillation loss.
///
///   loss = alpha * T^2 * (1/B) * sum_i KL( softmax(t_i / T) || softmax(s_i / T) )
///        + (1 - alpha) * (1/L) * sum_{i labelled} cross_entropy(s_i, y_i)
///
/// B is the batch size (the true KL per sample, "batchmean"), L the number of labelled samples
/// (targets != ignore_index; the hard term is 0 when L = 0). T^2 keeps the soft term's gradient
/// magnitude comparable across temperatures. Computed with log-softmax throughout; float32,
/// float64 and bfloat16 logits are accepted. Gradient flows to `student_logits` only.
///
/// Throws `kdistill::Error` when: logits are not 2-D or differ in shape; targets are not a 1-D
/// integer tensor of the batch size with values in [0, C) or ignore_index; T <= 0; alpha outside
/// [0, 1]; any logit is NaN or infinite (the message gives the row).
///
/// Example:
/// ```
/// auto loss = kdistill::kd_loss(student(x), teacher_logits, y,
///                               kdistill::KDLossOptions().temperature(4).alpha(0.9));
/// loss.backward();
/// ```
torch::Tensor kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                      const torch::Tensor& targets, const KDLossOptions& options = {});

/// The soft term alone: T^2 * batchmean KL(softmax(t/T) || softmax(s/T)).
torch::Tensor kd_soft_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                           double temperature = 4.0);

/// Soft-target cross-entropy: (1/B) * sum_i sum_c -softmax(t_i/T)_c * log_softmax(s_i/T)_c,
/// scaled by T^2. Differs from `kd_soft_loss` by the teacher's entropy, a constant in s.
torch::Tensor soft_target_cross_entropy(const torch::Tensor& student_logits,
                                        const torch::Tensor& teacher_logits,
                                        double temperature = 1.0);

/// Mean squared error between logits (Ba & Caruana 2014): (1/(B*C)) * sum (s - t)^2.
torch::Tensor logit_mse(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits);

/// Cross-entropy on labelled samples only (targets != ignore_index), averaged over them; 0 when
/// the batch has none.
torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                   int64_t ignore_index = -1);

/// `kd_loss` as a module, for pipelines that hold their loss as a `torch::nn::Module`.
///
/// Example:
/// ```
/// kdistill::KDLoss criterion(kdistill::KDLossOptions().temperature(2).alpha(0.7));
/// auto loss = criterion(student_logits, teacher_logits, targets);
/// ```
class KDLossImpl : public torch::nn::Cloneable<KDLossImpl> {
 public:
  explicit KDLossImpl(KDLossOptions options = {});
  void reset() override;
  /// See `kd_loss`.
  torch::Tensor forward(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                        const torch::Tensor& targets);
  KDLossOptions options;
};
TORCH_MODULE(KDLoss);

}  // namespace kdistill
#pragma GCC visibility pop
