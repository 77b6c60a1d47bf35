#pragma once

// Unchecked loss kernels for the trainer's hot loop: the trainer validates its data once and
// checks the loss for NaN/Inf each step, so it skips kd_loss's per-call input checks.

#include <torch/types.h>

#include <utility>

#include "kdistill/losses/divergence.h"
#include "kdistill/losses/kd_loss.h"
#include "kdistill/losses/sparse.h"

namespace kdistill::detail {

/// Input checks shared by the losses; each throws `kdistill::Error` naming `fn`. Logits must be
/// finite, non-empty floating point, 2-D `[B, C]` or, with `any_rank`, `[..., C]`.
void check_logits(const char* fn, const char* name, const torch::Tensor& x, bool any_rank = false);
void check_pair(const char* fn, const torch::Tensor& s, const torch::Tensor& t, bool any_rank = false);
void check_temperature(const char* fn, double temperature);
/// Targets: 1-D integers of the batch size, each in [0, classes) or ignore_index.
void check_targets(const char* fn, const torch::Tensor& y, int64_t batch, int64_t classes, int64_t ignore_index);

/// bfloat16 and float16 logits promoted to float32 (softmaxes of reduced-precision logits lose
/// the tail); other dtypes as they are. Differentiable.
torch::Tensor promote(const torch::Tensor& x);

torch::Tensor soft_kl(const torch::Tensor& s, const torch::Tensor& t, double temperature);
torch::Tensor hard_ce(const torch::Tensor& s, const torch::Tensor& y, int64_t ignore_index);
/// Mean cross-entropy over a batch in which every target is a label (no ignore_index): the
/// trainer's path when its training set has no unlabelled sample, a few ops cheaper per step.
torch::Tensor plain_ce(const torch::Tensor& s, const torch::Tensor& y);
torch::Tensor kd_loss_unchecked(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& y,
                                const KDLossOptions& options, bool all_labelled = false);

/// Throws unless the options name a known kind with beta and skew in range (T is checked by the
/// caller: objectives schedule it).
void check_divergence_options(const char* fn, const DivergenceOptions& options);
/// sum over the last dimension of a (log a - log b), from log a and log b; a class with a = 0
/// adds 0 (not 0 * (-inf - log b) = NaN).
torch::Tensor kl_from_log(const torch::Tensor& log_a, const torch::Tensor& log_b);
/// `divergence` from the student's and the teacher's log-probabilities (already softened), per
/// position, without the T^2 factor.
torch::Tensor divergence_from_log_probs(const torch::Tensor& log_q, const torch::Tensor& log_p,
                                        const DivergenceOptions& options);
/// The mean of per-position values `d`, or sum(d * mask) / sum(mask) (0 when the mask selects
/// nothing); throws `kdistill::Error` naming `fn` when the mask's shape is not `d`'s.
torch::Tensor masked_mean(const char* fn, const torch::Tensor& d, const torch::Tensor& mask);
/// Throws `kdistill::Error` naming `fn` unless `targets` fit `student_logits` (`[..., C]`): shapes,
/// integer indices in [0, C), 1 <= k <= C.
void check_topk_targets(const char* fn, const torch::Tensor& student_logits, const TopKTargets& targets);
/// The student's and the teacher's (k + 1)-bucket log-probabilities, softened at `t`
/// (`sparse_divergence`'s buckets; k buckets when k = C).
std::pair<torch::Tensor, torch::Tensor> bucket_log_probs(const torch::Tensor& student_logits,
                                                         const TopKTargets& targets, double t);
/// Throws `kdistill::Error` naming `fn` unless `targets` fit `student_logits`: shapes, integer
/// indices in [-1, C), a temperature > 0.
void check_sampled_targets(const char* fn, const torch::Tensor& student_logits, const SampledTargets& targets);
/// log softmax(student_logits / T) at the drawn classes `[..., S]` (T: the targets'; padding
/// reads class 0 and must be weighted 0).
torch::Tensor sampled_log_q(const torch::Tensor& student_logits, const SampledTargets& targets);
/// DKD's per-sample TCKD and NCKD `[B]` from softened log-probabilities and targets in [0, C),
/// without the T^2 factor.
std::pair<torch::Tensor, torch::Tensor> dkd_parts(const torch::Tensor& log_q, const torch::Tensor& log_p,
                                                  const torch::Tensor& targets);

}  // namespace kdistill::detail
