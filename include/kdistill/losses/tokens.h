#pragma once

#include <cstdint>
#include <string>

#include <torch/types.h>

#include "kdistill/losses/objective.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// How a sequence batch's per-token losses become one number.
///
///   mean          (1 / T) sum_{b,t} m_bt l_bt,  T = sum_{b,t} m_bt   (the mean over real tokens)
///   sequence_sum  (1 / B) sum_{b,t} m_bt l_bt                        (each sequence's sum, averaged)
///
/// where m_bt is 1 for a counted position (target >= 0) and 0 for padding or prompt. `mean` is
/// the default and what Hugging Face's causal-LM loss computes; `sequence_sum` weights long
/// sequences more (MiniLLM's sequence-level view). Neither depends on the padded length L, and
/// both are exact under gradient accumulation (`TrainerOptions::micro_batches`): the trainer
/// weights micro-batch i by T_i / T (mean) or B_i / B (sequence_sum), never by 1 / k.
enum class TokenReduction { kMean, kSequenceSum };

/// "mean" or "sequence_sum"; throws `kdistill::Error` naming the value otherwise.
TokenReduction parse_token_reduction(const std::string& name);
std::string to_string(TokenReduction reduction);

/// The rows of `values` (`[B, L, ...]`) at the counted positions of `targets` (`[B, L]`,
/// target >= 0), in row-major order: `[T, ...]`. Gradient flows through the selection.
///
/// Example:
/// ```
/// auto rows = kdistill::select_tokens(logits, targets);   // [T, V]: real tokens only
/// ```
torch::Tensor select_tokens(const torch::Tensor& values, const torch::Tensor& targets);

/// Next-token cross-entropy of logits `[B, L, V]` against targets `[B, L]` (-1: left out), with
/// `reduction`; 0 when no position counts. Targets are not shifted here: `token_windows` has
/// already paired position t's output with token t + 1.
///
/// Example:
/// ```
/// auto loss = kdistill::token_cross_entropy(student(x), batch.targets);
/// ```
torch::Tensor token_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                  TokenReduction reduction = TokenReduction::kMean);

/// A sequence step's context seen token by token: student and teacher logits (and ensemble
/// members') `[B, L, V]` become `[T, V]` rows of the counted positions, targets `[T]`, and
/// `sample_weights` (`[B]` per sequence, or `[B, L]`) become one weight per selected token. Every objective then sees
/// one row per real token, so its mean over rows is the mean over real tokens: KD, the
/// divergences, DKD, cross-entropy and user objectives need no sequence code. Features are left
/// as they are. A context whose student logits are not `[B, L, V]` is returned unchanged. Throws
/// `kdistill::Error` when the targets are not `[B, L]` or a top-k teacher is given (sequence
/// caches are not supported yet).
StepContext token_context(const StepContext& ctx);

}  // namespace kdistill
#pragma GCC visibility pop
