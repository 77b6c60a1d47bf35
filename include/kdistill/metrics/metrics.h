#pragma once

#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::metrics {

/// Fraction of labelled samples whose arg-max logit is the target; samples with target -1 are
/// left out. Returns 0 when no sample is labelled.
///
/// Example:
/// ```
/// double acc = kdistill::metrics::accuracy(model(x), y);
/// ```
double accuracy(const torch::Tensor& logits, const torch::Tensor& targets);

/// Fraction of labelled samples whose target is among the `k` largest logits.
double top_k_accuracy(const torch::Tensor& logits, const torch::Tensor& targets, int64_t k);

/// Teacher–student top-1 agreement: the fraction of samples on which both predict the same class
/// (labels not needed).
double agreement(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits);

/// Expected calibration error with `bins` equal-width confidence bins:
/// sum_b (n_b / n) * |accuracy_b - mean confidence_b|, over labelled samples.
double expected_calibration_error(const torch::Tensor& logits, const torch::Tensor& targets, int64_t bins = 15);

/// Mean negative log-likelihood (cross-entropy) over labelled samples.
double nll(const torch::Tensor& logits, const torch::Tensor& targets);

/// Confusion matrix, int64 `[C, C]`: entry (true, predicted) counts labelled samples.
torch::Tensor confusion_matrix(const torch::Tensor& logits, const torch::Tensor& targets);

/// The metrics of one evaluation.
struct Evaluation {
  double accuracy = 0;
  double top5_accuracy = 0;
  double nll = 0;
  double ece = 0;
  double agreement = -1;  ///< with the teacher; -1 when no teacher logits were given
  int64_t samples = 0;
};

/// All of the above at once; `teacher_logits` may be undefined. Sequence logits `[N, L, V]` with
/// targets `[N, L]` are scored token by token over the counted positions (target >= 0), and
/// `samples` is then the number of those tokens; `nll` is in nats per token (bits per token:
/// nll / ln 2; perplexity: exp(nll)).
Evaluation evaluate_logits(const torch::Tensor& logits, const torch::Tensor& targets,
                           const torch::Tensor& teacher_logits = {});

}  // namespace kdistill::metrics
#pragma GCC visibility pop
