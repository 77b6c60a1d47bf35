#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::metrics {

/// McNemar's exact test for two classifiers scored on the same samples: of the n = a_only + b_only
/// samples that exactly one of them gets right, a_only went to A. Under the null hypothesis (both
/// equally accurate) a_only ~ Binomial(n, 1/2); the two-sided p-value is
///   p = min(1, 2 * sum_{k <= min(a_only, b_only)} C(n, k) / 2^n)
/// (1 when n = 0). Computed in log space, exact for any n. Throws `kdistill::Error` for negative
/// counts.
///
/// Example:
/// ```
/// double p = kdistill::metrics::mcnemar_exact_p(12, 30);  // 0.0079
/// ```
double mcnemar_exact_p(int64_t a_only, int64_t b_only);

/// Options for `bootstrap_difference_ci`.
struct BootstrapOptions {
  /// Resamples drawn.
  TORCH_ARG(int64_t, resamples) = 10000;
  /// Coverage of the interval, in (0, 1).
  TORCH_ARG(double, level) = 0.95;
  /// Seed of the resampling (the interval is reproducible).
  TORCH_ARG(uint64_t, seed) = 0;
};

/// Percentile-bootstrap confidence interval of accuracy(B) - accuracy(A) on paired samples:
/// samples are drawn with replacement (n of n, `resamples` times), and the interval is the
/// ((1 - level)/2, (1 + level)/2) quantiles of the resampled differences. `a_correct` and
/// `b_correct` are `[n]` bool (or 0/1) tensors. The difference per sample takes only the values
/// -1, 0 and 1, so a resample is drawn as its multinomial counts of those values, which has the
/// same distribution as drawing n indices and costs O(resamples) instead of O(resamples * n).
///
/// Example:
/// ```
/// auto [low, high] = kdistill::metrics::bootstrap_difference_ci(pa == y, pb == y);
/// ```
std::pair<double, double> bootstrap_difference_ci(const torch::Tensor& a_correct, const torch::Tensor& b_correct,
                                                  const BootstrapOptions& options = {});

/// Two-sided p-value of the paired t-test of mean(b - a) = 0 (e.g. one accuracy per seed for two
/// methods): t = mean(d) / (sd(d) / sqrt(n)) on n - 1 degrees of freedom. Needs n >= 2 pairs; 1
/// when every difference is 0, 0 when the differences are equal and non-zero.
///
/// Example:
/// ```
/// double p = kdistill::metrics::paired_t_test_p({0.881, 0.884, 0.879}, {0.886, 0.887, 0.885});
/// ```
double paired_t_test_p(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace kdistill::metrics
#pragma GCC visibility pop
