#pragma once

#include <string>

#include <torch/arg.h>
#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// Options for `divergence` and `divergence_loss`.
///
/// Example:
/// ```
/// auto opts = kdistill::DivergenceOptions().kind("jsd").beta(0.5).temperature(1);
/// ```
struct DivergenceOptions {
  /// "kl", "reverse_kl", "jsd", "tvd", "skew_kl" or "skew_reverse_kl" (formulas at `divergence`).
  TORCH_ARG(std::string, kind) = "kl";
  /// Softmax temperature T applied to both logits; > 0. The result is multiplied by T^2.
  TORCH_ARG(double, temperature) = 1.0;
  /// jsd: the teacher's share beta of the mixture, in (0, 1); 0.5 is the symmetric
  /// Jensen-Shannon divergence.
  TORCH_ARG(double, beta) = 0.5;
  /// skew_kl, skew_reverse_kl: the skew alpha, in [0, 1); DistiLLM's default is 0.1.
  TORCH_ARG(double, skew) = 0.1;
};

/// Divergences between the teacher's and the student's softened distributions, per position.
/// With p = softmax(t / T) (teacher) and q = softmax(s / T) (student) over the last dimension:
///
///   kl               KL(p || q) = sum_c p_c (log p_c - log q_c)    forward KL: Hinton's KD, mean-seeking
///   reverse_kl       KL(q || p)                                    mode-seeking (MiniLLM)
///   jsd              beta KL(p || m) + (1 - beta) KL(q || m),  m = beta p + (1 - beta) q
///                                                                  generalized JSD (GKD, Agarwal et al. 2024)
///   tvd              (1/2) sum_c |p_c - q_c|                       total variation
///   skew_kl          KL(p || alpha p + (1 - alpha) q)              skew KL (DistiLLM, Ko et al. 2024)
///   skew_reverse_kl  KL(q || alpha q + (1 - alpha) p)              skew reverse KL (DistiLLM)
///
/// each multiplied by T^2 (the convention of Hinton et al., kept for every kind so that a
/// divergence's gradient keeps its size as T changes; at T = 1, the temperature GKD and DistiLLM
/// use, it changes nothing). jsd with beta -> 0 tends to 0 (it is not rescaled to a KL); skew_kl
/// with alpha = 0 is kl.
///
/// Logits are `[..., C]` (a batch `[B, C]`, or token positions `[B, L, C]`) and the result has
/// their shape without the last dimension. Computed from log-softmax in float32 (bfloat16 and
/// float16 logits are promoted) or float64; the mixtures with logsumexp, so no probability is
/// rounded to 0 before its logarithm is taken. Gradient flows to `student_logits` only.
///
/// Throws `kdistill::Error` for an unknown kind, T <= 0, beta outside (0, 1), skew outside
/// [0, 1), logits of different shapes, or logits with no class dimension.
///
/// Example:
/// ```
/// auto per_sample = kdistill::divergence(s, t, kdistill::DivergenceOptions().kind("reverse_kl"));  // [B]
/// ```
torch::Tensor divergence(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                         const DivergenceOptions& options = {});

/// `divergence` averaged over positions: over all of them, or over those where `mask` (the
/// logits' shape without the last dimension; bool, or float weights) is non-zero,
///   sum(d * mask) / sum(mask)
/// and 0 when the mask selects nothing. For `[B, C]` logits without a mask this is the batch mean
/// (for kl: `kd_soft_loss`); for `[B, L, C]` with a padding mask, the mean over real tokens.
///
/// Example:
/// ```
/// auto loss = kdistill::divergence_loss(s, t, kdistill::DivergenceOptions().kind("jsd").beta(0.9), attention_mask);
/// loss.backward();
/// ```
torch::Tensor divergence_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                              const DivergenceOptions& options = {}, const torch::Tensor& mask = {});

}  // namespace kdistill
#pragma GCC visibility pop
