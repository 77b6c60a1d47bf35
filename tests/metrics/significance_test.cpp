// Significance tests against SciPy's values (recorded) and brute-force computations.
#include "kdistill/metrics/significance.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill::test {
namespace {

// Two-sided exact binomial p-value by direct summation in long double (small n only).
double binomial_two_sided(int64_t a, int64_t b) {
  const int64_t n = a + b, k = std::min(a, b);
  long double sum = 0, c = 1;  // C(n, 0)
  for (int64_t i = 0; i <= k; ++i) {
    sum += c;
    c = c * static_cast<long double>(n - i) / static_cast<long double>(i + 1);
  }
  return static_cast<double>(std::min<long double>(1, 2 * sum / std::pow(2.0L, static_cast<long double>(n))));
}

}  // namespace

TEST(Significance, McNemarMatchesScipyAndDirectSummation) {
  // scipy.stats.binomtest(k, n, 0.5).pvalue, recorded.
  EXPECT_NEAR(metrics::mcnemar_exact_p(12, 30), 0.007915897334896727, 1e-12);
  EXPECT_NEAR(metrics::mcnemar_exact_p(0, 5), 0.0625, 1e-12);
  EXPECT_NEAR(metrics::mcnemar_exact_p(480, 520), 0.2174482932041409, 1e-10);
  EXPECT_NEAR(metrics::mcnemar_exact_p(3, 1), 0.625, 1e-12);
  EXPECT_EQ(metrics::mcnemar_exact_p(0, 0), 1.0);
  EXPECT_EQ(metrics::mcnemar_exact_p(7, 7), 1.0);
  for (int64_t a = 0; a < 40; a += 3) {
    for (int64_t b = 0; b < 40; b += 5) {
      EXPECT_NEAR(metrics::mcnemar_exact_p(a, b), binomial_two_sided(a, b), 1e-12) << a << " " << b;
    }
  }
  EXPECT_GT(metrics::mcnemar_exact_p(100000, 100500), 0.1);  // large n stays finite and sensible
  EXPECT_THROW(metrics::mcnemar_exact_p(-1, 3), Error);
}

TEST(Significance, BootstrapIntervalMatchesIndexResampling) {
  // 2,000 paired samples: B right on 70 more. The interval from drawn counts must match the one
  // from drawing indices (the textbook bootstrap) to within the Monte-Carlo error.
  const int64_t n = 2000;
  auto a = torch::zeros({n}, torch::kBool), b = torch::zeros({n}, torch::kBool);
  a.narrow(0, 0, 1500).fill_(true);
  b.narrow(0, 0, 1450).fill_(true);
  b.narrow(0, 1500, 120).fill_(true);  // b_only 120, a_only 50
  auto [lo, hi] = metrics::bootstrap_difference_ci(a, b, metrics::BootstrapOptions().resamples(20000).seed(1));
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  auto ad = a.to(torch::kLong), bd = b.to(torch::kLong);
  auto pa = ad.accessor<int64_t, 1>(), pb = bd.accessor<int64_t, 1>();
  std::vector<double> diffs;
  for (int r = 0; r < 4000; ++r) {
    int64_t s = 0;
    for (int64_t i = 0; i < n; ++i) {
      const auto k = pick(rng);
      s += pb[k] - pa[k];
    }
    diffs.push_back(static_cast<double>(s) / n);
  }
  std::sort(diffs.begin(), diffs.end());
  // The resampled difference has a standard deviation near 0.0065 and moves in steps of 1/2000:
  // the percentiles must agree to about three steps.
  EXPECT_NEAR(lo, diffs[100], 0.0015);   // 2.5th percentile of 4,000
  EXPECT_NEAR(hi, diffs[3899], 0.0015);  // 97.5th
  EXPECT_LT(lo, 0.035);
  EXPECT_GT(hi, 0.035);
  EXPECT_GT(lo, 0.0);  // 120 against 50 is clearly above 0
  // Reproducible for a seed; all-equal models give [0, 0].
  auto again = metrics::bootstrap_difference_ci(a, b, metrics::BootstrapOptions().resamples(20000).seed(1));
  EXPECT_EQ(again.first, lo);
  EXPECT_EQ(again.second, hi);
  auto same = metrics::bootstrap_difference_ci(a, a);
  EXPECT_EQ(same.first, 0.0);
  EXPECT_EQ(same.second, 0.0);
  EXPECT_THROW(metrics::bootstrap_difference_ci(a, b.narrow(0, 0, 10)), Error);
  EXPECT_THROW(metrics::bootstrap_difference_ci(a, b, metrics::BootstrapOptions().level(1)), Error);
  EXPECT_THROW(metrics::bootstrap_difference_ci(a.to(torch::kLong) * 2, b), Error);  // class ids, not right/wrong
}

TEST(Significance, PairedTTestMatchesScipy) {
  // scipy.stats.ttest_rel(a, b).pvalue, recorded.
  EXPECT_NEAR(metrics::paired_t_test_p({0.881, 0.884, 0.879}, {0.886, 0.887, 0.885}), 0.0339082169207041, 1e-10);
  EXPECT_NEAR(metrics::paired_t_test_p({1, 2, 3, 4, 5}, {1.5, 2.1, 3.9, 4.2, 5.0}), 0.10546387273823561, 1e-10);
  std::vector<double> zeros(20, 0.0), d = {0.1, -0.05, 0.2, 0.3,  0.01, 0.02, -0.1, 0.15, 0.2, 0.05,
                                           0.3, 0.1,   -0.2, 0.04, 0.12, 0.08, 0.0,  0.09, 0.11, 0.07};
  EXPECT_NEAR(metrics::paired_t_test_p(zeros, d), 0.00852687339399925, 1e-10);
  EXPECT_EQ(metrics::paired_t_test_p({1, 2}, {1, 2}), 1.0);
  EXPECT_EQ(metrics::paired_t_test_p({1, 2}, {2, 3}), 0.0);
  EXPECT_THROW(metrics::paired_t_test_p({1}, {2}), Error);
  EXPECT_THROW(metrics::paired_t_test_p({1, 2}, {2}), Error);
}

}  // namespace kdistill::test
