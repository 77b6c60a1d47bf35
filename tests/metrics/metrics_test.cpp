// Tests of kdistill::metrics against hand counts and plain-loop reference implementations.

#include <torch/torch.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/metrics/metrics.h"
#include "support.h"

namespace {

using Mat = std::vector<std::vector<double>>;

Mat to_mat(const torch::Tensor& x) {
  auto d = x.detach().to(torch::kDouble).contiguous();
  auto a = d.accessor<double, 2>();
  Mat m(static_cast<size_t>(d.size(0)), std::vector<double>(static_cast<size_t>(d.size(1))));
  for (int64_t i = 0; i < d.size(0); ++i)
    for (int64_t j = 0; j < d.size(1); ++j) m[i][j] = a[i][j];
  return m;
}

std::vector<int64_t> to_vec(const torch::Tensor& y) {
  auto l = y.to(torch::kLong).contiguous();
  return std::vector<int64_t>(l.data_ptr<int64_t>(), l.data_ptr<int64_t>() + l.numel());
}

size_t argmax(const std::vector<double>& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

std::vector<double> softmax(const std::vector<double>& z) {
  double mx = z[argmax(z)], sum = 0;
  std::vector<double> p;
  for (double v : z) sum += std::exp(v - mx);
  for (double v : z) p.push_back(std::exp(v - mx) / sum);
  return p;
}

// Fraction of labelled rows whose target has fewer than k logits above it (no ties in random data).
double ref_topk(const Mat& l, const std::vector<int64_t>& y, int64_t k) {
  int64_t hit = 0, n = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    if (y[i] < 0) continue;
    ++n;
    int64_t above = 0;
    for (double v : l[i]) above += v > l[i][static_cast<size_t>(y[i])];
    hit += above < k;
  }
  return n ? static_cast<double>(hit) / static_cast<double>(n) : 0.0;
}

double ref_nll(const Mat& l, const std::vector<int64_t>& y) {
  double total = 0;
  int64_t n = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    if (y[i] < 0) continue;
    total -= std::log(softmax(l[i])[static_cast<size_t>(y[i])]);
    ++n;
  }
  return n ? total / static_cast<double>(n) : 0.0;
}

// ECE with bin b holding confidences in (b/bins, (b+1)/bins].
double ref_ece(const Mat& l, const std::vector<int64_t>& y, int64_t bins) {
  std::vector<double> count(static_cast<size_t>(bins)), conf_sum(count), acc_sum(count);
  int64_t n = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    if (y[i] < 0) continue;
    ++n;
    auto p = softmax(l[i]);
    size_t pred = argmax(p);
    for (int64_t b = 0; b < bins; ++b) {
      const double lo = static_cast<double>(b) / static_cast<double>(bins);
      const double hi = static_cast<double>(b + 1) / static_cast<double>(bins);
      if (p[pred] > lo && p[pred] <= hi) {
        count[b] += 1;
        conf_sum[b] += p[pred];
        acc_sum[b] += static_cast<int64_t>(pred) == y[i] ? 1.0 : 0.0;
      }
    }
  }
  double ece = 0;
  for (int64_t b = 0; b < bins; ++b) {
    if (count[b] > 0) ece += count[b] / n * std::abs(acc_sum[b] / count[b] - conf_sum[b] / count[b]);
  }
  return ece;
}

struct Data {
  torch::Tensor logits, teacher, y;
};

Data make_random_case(int64_t n, int64_t c, uint64_t seed) {
  torch::manual_seed(seed);
  Data d;
  d.logits = torch::randn({n, c}, torch::kFloat) * 2;
  d.teacher = d.logits + torch::randn({n, c}, torch::kFloat);
  d.y = torch::randint(0, c, {n}, torch::kLong);
  d.y.index_fill_(0, torch::randperm(n).slice(0, 0, n / 5), -1);  // a fifth unlabelled
  return d;
}

}  // namespace

TEST(Metrics, AccuracyCountsLabelledSamplesOnly) {
  // Arg-max per row: 0, 1, 2, 1, 0, 2.
  auto logits = torch::tensor({{3.0, 1.0, 0.0}, {0.0, 2.0, 1.0}, {0.0, 0.5, 4.0},
                               {1.0, 1.5, -1.0}, {2.0, 0.0, 0.0}, {0.0, 0.0, 1.0}});
  // Labelled rows 0, 1, 3, 4: correct, correct, wrong (1 vs 2), correct -> 3/4; rows 2 and 5 ignored
  // (they would be correct and wrong).
  auto y = torch::tensor({0, 1, -1, 2, 0, -1}, torch::kLong);
  EXPECT_DOUBLE_EQ(kdistill::metrics::accuracy(logits, y), 0.75);
  EXPECT_DOUBLE_EQ(kdistill::metrics::accuracy(logits, torch::full({6}, -1, torch::kLong)), 0.0);
  EXPECT_DOUBLE_EQ(kdistill::metrics::accuracy(logits, torch::tensor({0, 1, 2, 1, 0, 2}, torch::kInt)), 1.0);
  // Row 3's target 2 has the smallest logit: top-2 misses it, top-3 finds it.
  EXPECT_DOUBLE_EQ(kdistill::metrics::top_k_accuracy(logits, y, 2), 0.75);
  EXPECT_DOUBLE_EQ(kdistill::metrics::top_k_accuracy(logits, y, 3), 1.0);
  EXPECT_DOUBLE_EQ(kdistill::metrics::top_k_accuracy(logits, y, 10), 1.0);  // k > classes
}

TEST(Metrics, TopKMatchesRankCount) {
  auto d = make_random_case(200, 10, 4);
  const auto l = to_mat(d.logits);
  const auto y = to_vec(d.y);
  for (int64_t k : {1, 2, 5, 9}) {
    EXPECT_NEAR(kdistill::metrics::top_k_accuracy(d.logits, d.y, k), ref_topk(l, y, k), 1e-12) << k;
  }
  EXPECT_NEAR(kdistill::metrics::accuracy(d.logits, d.y), ref_topk(l, y, 1), 1e-12);
  EXPECT_THROW(kdistill::metrics::top_k_accuracy(d.logits, d.y, 0), kdistill::Error);
}

TEST(Metrics, Agreement) {
  auto s = torch::tensor({{3.0, 1.0, 0.0}, {0.0, 2.0, 1.0}, {0.0, 0.5, 4.0}, {1.0, 1.5, -1.0}});
  auto t = torch::tensor({{9.0, 1.0, 0.0}, {0.0, 0.0, 1.0}, {-1.0, 0.5, 0.7}, {0.0, 5.0, 1.0}});
  // Arg-max 0,1,2,1 vs 0,2,2,1 -> 3 of 4 agree.
  EXPECT_DOUBLE_EQ(kdistill::metrics::agreement(s, t), 0.75);
  EXPECT_DOUBLE_EQ(kdistill::metrics::agreement(s, s * 2), 1.0);
  EXPECT_THROW(kdistill::metrics::agreement(s, t.slice(0, 0, 3)), kdistill::Error);
  EXPECT_THROW(kdistill::metrics::agreement(s[0], t[0]), kdistill::Error);
}

TEST(Metrics, ExpectedCalibrationErrorHandMade) {
  // Two classes with logits log(p), log(1 - p): the softmax is exactly (p, 1 - p).
  auto row = [](double p) { return std::vector<double>{std::log(p), std::log(1 - p)}; };
  const Mat rows = {row(0.95), row(0.9), row(0.7), row(0.35), row(0.55), row(0.99)};
  auto logits = torch::empty({6, 2}, torch::kDouble);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j < 2; ++j) logits[i][j] = rows[i][j];
  // Confidences .95 (right), .9 (wrong), .7 (right), .65 for class 1 (right), .55 (wrong); last unlabelled.
  auto y = torch::tensor({0, 1, 0, 1, 1, -1}, torch::kLong);
  // 5 bins: (.8,1]: 2 samples, acc 1/2, conf .925; (.6,.8]: 2, acc 1, conf .675; (.4,.6]: 1, acc 0, conf .55.
  // ECE = 2/5*.425 + 2/5*.325 + 1/5*.55 = 0.41.
  EXPECT_NEAR(kdistill::metrics::expected_calibration_error(logits, y, 5), 0.41, 1e-12);
  EXPECT_NEAR(ref_ece(rows, to_vec(y), 5), 0.41, 1e-12);  // the reference agrees with the hand sum
  // One bin: |overall accuracy - mean confidence| = |3/5 - 3.75/5| = 0.15.
  EXPECT_NEAR(kdistill::metrics::expected_calibration_error(logits, y, 1), 0.15, 1e-12);
  EXPECT_THROW(kdistill::metrics::expected_calibration_error(logits, y, 0), kdistill::Error);
}

TEST(Metrics, ExpectedCalibrationErrorAndNllMatchLoops) {
  auto d = make_random_case(300, 7, 9);
  const auto l = to_mat(d.logits);
  const auto y = to_vec(d.y);
  for (int64_t bins : {1, 10, 15}) {
    EXPECT_NEAR(kdistill::metrics::expected_calibration_error(d.logits, d.y, bins), ref_ece(l, y, bins), 1e-9)
        << bins;
  }
  EXPECT_NEAR(kdistill::metrics::nll(d.logits, d.y), ref_nll(l, y), 1e-9);
  EXPECT_DOUBLE_EQ(kdistill::metrics::nll(d.logits, torch::full({300}, -1, torch::kLong)), 0.0);
}

TEST(Metrics, ConfusionMatrixMatchesHandCounts) {
  auto d = make_random_case(120, 4, 13);
  const auto l = to_mat(d.logits);
  const auto y = to_vec(d.y);
  std::vector<std::vector<int64_t>> want(4, std::vector<int64_t>(4, 0));
  int64_t labelled = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    if (y[i] < 0) continue;
    ++want[static_cast<size_t>(y[i])][argmax(l[i])];
    ++labelled;
  }
  auto cm = kdistill::metrics::confusion_matrix(d.logits, d.y);
  ASSERT_EQ(cm.dim(), 2);
  ASSERT_EQ(cm.size(0), 4);
  ASSERT_EQ(cm.size(1), 4);
  EXPECT_EQ(cm.scalar_type(), torch::kLong);
  EXPECT_EQ(cm.sum().item<int64_t>(), labelled);
  auto c = cm.accessor<int64_t, 2>();
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(c[i][j], want[i][j]) << i << "," << j;
  EXPECT_THROW(kdistill::metrics::confusion_matrix(d.logits, torch::full({120}, 4, torch::kLong)),
               kdistill::Error);
}

TEST(Metrics, EvaluateLogitsFillsEveryField) {
  auto d = make_random_case(250, 10, 21);
  const auto l = to_mat(d.logits), t = to_mat(d.teacher);
  const auto y = to_vec(d.y);
  int64_t agree = 0;
  for (size_t i = 0; i < l.size(); ++i) agree += argmax(l[i]) == argmax(t[i]);

  auto e = kdistill::metrics::evaluate_logits(d.logits, d.y, d.teacher);
  EXPECT_EQ(e.samples, 250);
  EXPECT_NEAR(e.accuracy, ref_topk(l, y, 1), 1e-12);
  EXPECT_NEAR(e.top5_accuracy, ref_topk(l, y, 5), 1e-12);
  EXPECT_NEAR(e.nll, ref_nll(l, y), 1e-9);
  EXPECT_NEAR(e.ece, ref_ece(l, y, 15), 1e-9);
  EXPECT_NEAR(e.agreement, static_cast<double>(agree) / 250.0, 1e-12);

  auto no_teacher = kdistill::metrics::evaluate_logits(d.logits, d.y);
  EXPECT_EQ(no_teacher.agreement, -1.0);
  EXPECT_EQ(no_teacher.accuracy, e.accuracy);
}

TEST(Metrics, BadShapesThrow) {
  auto logits = torch::randn({5, 3});
  auto y = torch::tensor({0, 1, 2, 0, 1}, torch::kLong);
  EXPECT_THROW(kdistill::metrics::accuracy(logits[0], torch::tensor({0}, torch::kLong)), kdistill::Error);
  EXPECT_THROW(kdistill::metrics::accuracy(logits, y.slice(0, 0, 4)), kdistill::Error);
  EXPECT_THROW(kdistill::metrics::accuracy(logits, y.unsqueeze(1)), kdistill::Error);
  EXPECT_THROW(kdistill::metrics::nll(logits, y.slice(0, 0, 4)), kdistill::Error);
  EXPECT_THROW(kdistill::metrics::expected_calibration_error(logits[0], y), kdistill::Error);
  EXPECT_THROW(kdistill::metrics::confusion_matrix(logits, y.slice(0, 0, 2)), kdistill::Error);
  EXPECT_THROW(kdistill::metrics::evaluate_logits(logits, y.slice(0, 0, 4)), kdistill::Error);
  const std::string msg = kdistill::test::error_of([&] { kdistill::metrics::nll(logits, y.slice(0, 0, 4)); });
  EXPECT_THAT(msg, ::testing::HasSubstr("nll"));
  EXPECT_THAT(msg, ::testing::HasSubstr("5 entries"));
  EXPECT_THAT(msg, ::testing::HasSubstr("[4]"));
}
