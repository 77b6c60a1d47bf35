#pragma once

// Unchecked loss kernels for the trainer's hot loop: the trainer validates its data once and
// checks the loss for NaN/Inf each step, so it skips kd_loss's per-call input checks.

#include <torch/types.h>

#include "kdistill/losses/kd_loss.h"

namespace kdistill::detail {

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

}  // namespace kdistill::detail
