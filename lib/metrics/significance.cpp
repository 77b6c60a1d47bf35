#include "kdistill/metrics/significance.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill::metrics {
namespace {

// The continued fraction of the regularized incomplete beta function (modified Lentz), valid for
// x < (a + 1) / (a + b + 2).
double beta_fraction(double a, double b, double x) {
  constexpr double tiny = 1e-300, eps = 1e-15;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  d = 1.0 / (std::abs(d) < tiny ? tiny : d);
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    for (int odd = 0; odd < 2; ++odd) {
      const double num = odd == 0 ? m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m))
                                  : -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
      d = 1.0 + num * d;
      d = 1.0 / (std::abs(d) < tiny ? tiny : d);
      c = 1.0 + num / c;
      if (std::abs(c) < tiny) c = tiny;
      const double delta = c * d;
      h *= delta;
      if (odd == 1 && std::abs(delta - 1.0) < eps) return h;
    }
  }
  return h;
}

// I_x(a, b).
double incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0.0;
  if (x >= 1) return 1.0;
  const double front = std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_fraction(a, b, x) / a;
  return 1.0 - front * beta_fraction(b, a, 1.0 - x) / b;
}

}  // namespace

double mcnemar_exact_p(int64_t a_only, int64_t b_only) {
  check(a_only >= 0 && b_only >= 0, "mcnemar_exact_p: counts must be >= 0, got ", a_only, " and ", b_only);
  const int64_t n = a_only + b_only, k = std::min(a_only, b_only);
  if (n == 0) return 1.0;
  // log C(n, i) - n log 2, summed over i <= k with log-sum-exp.
  std::vector<double> terms;
  for (int64_t i = 0; i <= k; ++i) {
    terms.push_back(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * std::log(2.0));
  }
  const double mx = *std::max_element(terms.begin(), terms.end());
  double s = 0;
  for (double t : terms) s += std::exp(t - mx);
  return std::min(1.0, 2.0 * std::exp(mx + std::log(s)));
}

std::pair<double, double> bootstrap_difference_ci(const torch::Tensor& a_correct, const torch::Tensor& b_correct,
                                                  const BootstrapOptions& o) {
  const char* fn = "bootstrap_difference_ci";
  check(a_correct.defined() && b_correct.defined() && a_correct.dim() == 1 && a_correct.sizes() == b_correct.sizes(), fn,
        ": a_correct and b_correct must be 1-D of the same length");
  check(a_correct.numel() > 0, fn, ": no samples");
  check(o.resamples() >= 1, fn, ": resamples must be >= 1, got ", o.resamples());
  check(o.level() > 0 && o.level() < 1, fn, ": level must be in (0, 1), got ", o.level());
  auto a = a_correct.to(torch::kCPU, torch::kLong), b = b_correct.to(torch::kCPU, torch::kLong);
  check(((a == 0) | (a == 1)).all().item<bool>() && ((b == 0) | (b == 1)).all().item<bool>(), fn,
        ": a_correct and b_correct must hold 0 or 1 (right or wrong per sample)");
  const int64_t n = a.numel();
  const int64_t up = ((b == 1) & (a == 0)).sum().item<int64_t>();    // difference +1
  const int64_t down = ((a == 1) & (b == 0)).sum().item<int64_t>();  // difference -1
  const double p_up = static_cast<double>(up) / n;
  const double p_down_rest = up < n ? static_cast<double>(down) / static_cast<double>(n - up) : 0.0;
  std::mt19937_64 rng(o.seed());
  std::vector<double> diffs(static_cast<size_t>(o.resamples()));
  for (auto& d : diffs) {
    const int64_t u = std::binomial_distribution<int64_t>(n, p_up)(rng);
    const int64_t v = std::binomial_distribution<int64_t>(n - u, p_down_rest)(rng);
    d = static_cast<double>(u - v) / static_cast<double>(n);
  }
  std::sort(diffs.begin(), diffs.end());
  auto at = [&](double q) {  // linear interpolation between order statistics
    const double pos = q * static_cast<double>(diffs.size() - 1);
    const auto lo = static_cast<size_t>(std::floor(pos));
    const auto hi = std::min(lo + 1, diffs.size() - 1);
    return diffs[lo] + (pos - static_cast<double>(lo)) * (diffs[hi] - diffs[lo]);
  };
  return {at((1 - o.level()) / 2), at((1 + o.level()) / 2)};
}

double paired_t_test_p(const std::vector<double>& a, const std::vector<double>& b) {
  check(a.size() == b.size(), "paired_t_test_p: a and b must pair up, got ", a.size(), " and ", b.size(), " values");
  check(a.size() >= 2, "paired_t_test_p: needs at least 2 pairs, got ", a.size());
  const auto n = static_cast<double>(a.size());
  double mean = 0;
  for (size_t i = 0; i < a.size(); ++i) mean += (b[i] - a[i]) / n;
  double ss = 0;
  for (size_t i = 0; i < a.size(); ++i) ss += (b[i] - a[i] - mean) * (b[i] - a[i] - mean);
  const double sd = std::sqrt(ss / (n - 1));
  if (sd == 0) return mean == 0 ? 1.0 : 0.0;
  const double t = mean / (sd / std::sqrt(n)), df = n - 1;
  return incomplete_beta(df / 2, 0.5, df / (df + t * t));
}

}  // namespace kdistill::metrics
