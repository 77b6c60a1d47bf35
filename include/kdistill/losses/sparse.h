#pragma once

#include <cstdint>

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include "kdistill/losses/divergence.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// A teacher's distribution kept sparse, as a `topk` logit cache stores it: per position, the k
/// most probable classes, their log-probabilities at T = 1, and the log of the probability
/// outside them (the tail). For `[B, C]` logits the tensors are `[B, k]`, `[B, k]` and `[B]`;
/// for `[B, L, C]`, `[B, L, k]`, `[B, L, k]` and `[B, L]`.
///
/// Example:
/// ```
/// auto targets = kdistill::topk_targets(teacher_logits, 4);  // from dense logits
/// auto loss = kdistill::sparse_divergence_loss(student_logits, targets);
/// ```
struct TopKTargets {
  /// Class indices `[..., k]` (any integer dtype), most probable first.
  torch::Tensor indices;
  /// log p_c of those classes `[..., k]` under the teacher's softmax at T = 1 (any float dtype;
  /// a cache stores float16).
  torch::Tensor log_probs;
  /// log(1 - sum of their probabilities) `[...]`: -inf when the k classes hold all the mass.
  torch::Tensor log_tail;
};

/// The top `k` classes of `softmax(teacher_logits)` (`[..., C]`, 1 <= k <= C), with their
/// log-probabilities and the log of the tail mass, computed in float32 (or float64) with
/// logsumexp, so a tail of 1e-30 keeps its logarithm. Throws `kdistill::Error` for k outside
/// [1, C] or non-finite logits.
TopKTargets topk_targets(const torch::Tensor& teacher_logits, int64_t k);

/// `divergence` against a sparse teacher: both distributions are reduced to k + 1 buckets, the
/// teacher's top-k classes I and one tail bucket that holds everything else. At T = 1:
///
///   p = (p_1, ..., p_k, p_tail)                         from `targets`
///   q = (q_1, ..., q_k, q_tail = sum_{j not in I} q_j)  q = softmax(student_logits)
///
/// At temperature T each bucket is softened and the buckets renormalised: the top-k as p_i^(1/T)
/// and q_i^(1/T); the student's tail exactly, as sum_{j not in I} q_j^(1/T); the teacher's tail,
/// whose classes a cache no longer has, as if it were shaped like the student's within the tail:
/// (p_tail / q_tail)^(1/T) * sum_{j not in I} q_j^(1/T) (no gradient flows through this
/// estimate). Then the chosen divergence of the buckets, times T^2.
///
/// With k = C there is no tail and the result is `divergence` of the dense logits. With k < C it
/// differs from the dense divergence: the student is not told how to spread the tail among its
/// classes, and at T != 1 the teacher's tail shape is estimated. docs/methods.md measures both.
///
/// Returns `[...]` (the student's shape without the class dimension). Gradient flows to
/// `student_logits` only. Throws `kdistill::Error` when the shapes disagree, an index is outside
/// [0, C), or the options are invalid (as for `divergence`).
///
/// Example:
/// ```
/// auto per_sample = kdistill::sparse_divergence(s, targets, kdistill::DivergenceOptions().temperature(4));
/// ```
torch::Tensor sparse_divergence(const torch::Tensor& student_logits, const TopKTargets& targets,
                                const DivergenceOptions& options = {});

/// `sparse_divergence` averaged over positions, or over those where `mask` is non-zero (as
/// `divergence_loss`).
torch::Tensor sparse_divergence_loss(const torch::Tensor& student_logits, const TopKTargets& targets,
                                     const DivergenceOptions& options = {}, const torch::Tensor& mask = {});

/// A teacher's distribution kept as random draws, as a `sampled` logit cache stores it (Random
/// Sampling KD, Anshumann et al., ACL 2025, with the teacher itself as the proposal): per
/// position, S classes drawn with replacement from p_T = softmax(teacher_logits / T), kept once
/// each with their share of the draws. For `[B, C]` logits the tensors are `[B, S]` (and `[B]`
/// for `top1`); for `[B, L, C]`, `[B, L, S]` and `[B, L]`.
///
/// The draws' empirical distribution w is an unbiased estimate of p_T (E[w_c] = p_T,c), and every
/// loss linear in p_T inherits it: the forward KL below, its value and its gradient, are unbiased
/// estimates of the dense ones (the KL's log-probabilities are the teacher's own, stored with the
/// draws). Top-k is biased instead: it renormalises the head.
///
/// Example:
/// ```
/// auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
/// auto targets = kdistill::sampled_targets(teacher_logits, 16, 1.0, gen);
/// auto loss = kdistill::sampled_kl_loss(student_logits, targets);
/// ```
struct SampledTargets {
  /// The distinct classes drawn `[..., S]` (any integer dtype), most drawn first; -1 pads a row
  /// with fewer than S distinct classes.
  torch::Tensor indices;
  /// Each class's share of the S draws `[..., S]` (0 for padding; a row sums to 1).
  torch::Tensor weights;
  /// The teacher's log p_T of those classes `[..., S]` (0 for padding).
  torch::Tensor log_probs;
  /// The teacher's most probable class `[...]`: its prediction, which the draws may miss.
  torch::Tensor top1;
  /// The temperature T the draws were made at; the loss must use the same.
  double temperature = 1.0;
};

/// Draws `samples` classes (S >= 1) per position from softmax(teacher_logits / temperature)
/// (`[..., C]`, finite) with `generator` (CPU; the draws are made on the CPU), and keeps the
/// distinct ones with their shares (see `SampledTargets`). Throws `kdistill::Error` for S < 1, a
/// temperature <= 0, or non-finite logits.
SampledTargets sampled_targets(const torch::Tensor& teacher_logits, int64_t samples, double temperature,
                               at::Generator generator);

/// The sampled estimate of T^2 * KL(p_T || softmax(student_logits / T)) per position:
///
///   T^2 * sum_i w_i * (log p_T,i - log softmax(student_logits / T)_i)
///
/// over the drawn classes i (padding has w = 0). Over the draws its mean is the dense value and
/// its gradient's mean the dense gradient (`docs/methods.md` gives the variance against S). The
/// temperature is the targets' own. Returns `[...]`; gradient flows to `student_logits` only.
/// Throws `kdistill::Error` when the shapes disagree or an index is outside [-1, C).
///
/// Example:
/// ```
/// auto per_token = kdistill::sampled_kl(student_logits, targets);   // [B, L]
/// ```
torch::Tensor sampled_kl(const torch::Tensor& student_logits, const SampledTargets& targets);

/// `sampled_kl` averaged over positions, or over those where `mask` is non-zero.
torch::Tensor sampled_kl_loss(const torch::Tensor& student_logits, const SampledTargets& targets,
                              const torch::Tensor& mask = {});

}  // namespace kdistill
#pragma GCC visibility pop
