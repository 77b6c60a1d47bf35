// Decoupled KD against an element-by-element double-precision computation of its formula.
#include "kdistill/losses/dkd.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/losses/divergence.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;
using Vec = std::vector<double>;

Vec softmax(const torch::Tensor& x, int64_t r, double T) {
  auto d = x.detach().to(torch::kDouble).contiguous();
  const int64_t C = d.size(1);
  double mx = -1e300, z = 0;
  for (int64_t c = 0; c < C; ++c) mx = std::max(mx, d[r][c].item<double>() / T);
  Vec p(C);
  for (int64_t c = 0; c < C; ++c) z += (p[c] = std::exp(d[r][c].item<double>() / T - mx));
  for (auto& v : p) v /= z;
  return p;
}

struct Parts {
  double tckd = 0, nckd = 0;
};

// TCKD and NCKD of one sample with target class g (no T^2).
Parts parts(const Vec& p, const Vec& q, int64_t g) {
  Parts out;
  // 1 - p_g as the sum of the other classes, so that a confident teacher keeps its digits.
  double prest = 0, qrest = 0;
  for (size_t c = 0; c < p.size(); ++c) {
    if (static_cast<int64_t>(c) != g) prest += p[c], qrest += q[c];
  }
  const double pg = p[g], qg = q[g];
  out.tckd = pg * std::log(pg / qg) + prest * std::log(prest / qrest);
  for (size_t c = 0; c < p.size(); ++c) {
    if (static_cast<int64_t>(c) == g) continue;
    const double ph = p[c] / prest, qh = q[c] / qrest;
    out.nckd += ph * std::log(ph / qh);
  }
  return out;
}

double reference(const torch::Tensor& s, const torch::Tensor& t, const std::vector<int64_t>& y, double alpha,
                 double beta, double T) {
  double sum = 0;
  for (int64_t i = 0; i < s.size(0); ++i) {
    auto p = softmax(t, i, T), q = softmax(s, i, T);
    const auto part = parts(p, q, y[i]);
    sum += alpha * part.tckd + beta * part.nckd;
  }
  return T * T * sum / static_cast<double>(s.size(0));
}

}  // namespace

TEST(Dkd, MatchesTheDoubleFormula) {
  torch::manual_seed(7);
  auto s = torch::randn({5, 6}, torch::kDouble) * 2, t = torch::randn({5, 6}, torch::kDouble) * 3;
  std::vector<int64_t> y = {0, 3, 5, 2, 2};
  auto yt = torch::tensor(y);
  for (auto [alpha, beta, T] : {std::tuple{1.0, 8.0, 4.0}, {0.5, 2.0, 1.0}, {0.0, 1.0, 2.0}}) {
    EXPECT_NEAR(dkd_loss(s, t, yt, DKDLossOptions().alpha(alpha).beta(beta).temperature(T)).item<double>(),
                reference(s, t, y, alpha, beta, T), 1e-11)
        << alpha << " " << beta << " " << T;
  }
  // Defaults are mdistiller's: alpha 1, beta 8, T 4.
  EXPECT_NEAR(dkd_loss(s, t, yt).item<double>(), reference(s, t, y, 1, 8, 4), 1e-11);
}

TEST(Dkd, KDsKLIsTCKDPlusOneMinusPgTimesNCKD) {
  // The decomposition the paper is built on, checked per sample with the library's own KL.
  torch::manual_seed(8);
  auto s = torch::randn({4, 7}, torch::kDouble), t = torch::randn({4, 7}, torch::kDouble) * 2;
  for (int64_t i = 0; i < 4; ++i) {
    auto si = s.narrow(0, i, 1), ti = t.narrow(0, i, 1);
    auto y = torch::tensor({i % 7});
    const double tckd = dkd_loss(si, ti, y, DKDLossOptions().alpha(1).beta(0).temperature(1)).item<double>();
    const double nckd = dkd_loss(si, ti, y, DKDLossOptions().alpha(0).beta(1).temperature(1)).item<double>();
    const double pg = softmax(ti, 0, 1)[i % 7];
    EXPECT_NEAR(divergence(si, ti).item<double>(), tckd + (1 - pg) * nckd, 1e-12) << i;
  }
}

TEST(Dkd, GradientMatchesCentralDifferencesAndTeacherGetsNone) {
  torch::manual_seed(9);
  auto s0 = torch::randn({3, 4}, torch::kDouble), t0 = torch::randn({3, 4}, torch::kDouble);
  std::vector<int64_t> y = {1, 0, 3};
  const auto o = DKDLossOptions().alpha(1).beta(8).temperature(2);
  auto s = s0.clone().requires_grad_(true), t = t0.clone().requires_grad_(true);
  dkd_loss(s, t, torch::tensor(y), o).backward();
  EXPECT_FALSE(t.grad().defined());
  const double eps = 1e-6;
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t j = 0; j < 4; ++j) {
      auto plus = s0.clone(), minus = s0.clone();
      plus[i][j] += eps;
      minus[i][j] -= eps;
      const double fd = (reference(plus, t0, y, 1, 8, 2) - reference(minus, t0, y, 1, 8, 2)) / (2 * eps);
      EXPECT_NEAR(s.grad()[i][j].item<double>(), fd, 1e-6) << "(" << i << "," << j << ")";
    }
  }
}

TEST(Dkd, AnUnlabelledSampleUsesTheTeachersTopClass) {
  torch::manual_seed(10);
  auto s = torch::randn({3, 5}), t = torch::randn({3, 5});
  auto top = t.argmax(1);
  auto y = top.clone();
  y[1] = -1;
  EXPECT_NEAR(dkd_loss(s, t, y).item<double>(), dkd_loss(s, t, top).item<double>(), 1e-6);
  // A confident teacher (p_g close to 1) keeps its digits: 1 - p_g comes from a logsumexp.
  // In float32, 1 - p_g computed as 1 - p_g would be 0 here (p_g = 1 - 1.9e-13): no digits left.
  auto sharp = torch::tensor({{30.0f, 0.0f, 1.0f}});
  auto s1 = torch::tensor({{1.0f, 0.5f, -0.5f}});
  auto l = dkd_loss(s1, sharp, torch::tensor({0}), DKDLossOptions().temperature(1));
  EXPECT_NEAR(l.item<double>(), reference(s1, sharp, {0}, 1, 8, 1), 1e-5);
}

TEST(Dkd, BadInputsThrowNamingTheArgument) {
  auto s = torch::randn({2, 3}), t = torch::randn({2, 3});
  auto y = torch::tensor({0, 1});
  auto msg = [&](const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& yy, const DKDLossOptions& o) {
    return error_of([&] { dkd_loss(a, b, yy, o); });
  };
  EXPECT_THAT(msg(s, t, y, DKDLossOptions().beta(-1)), HasSubstr("dkd_loss: beta must be >= 0, got -1"));
  EXPECT_THAT(msg(s, t, y, DKDLossOptions().alpha(NAN)), HasSubstr("dkd_loss: alpha must be >= 0"));
  EXPECT_THAT(msg(s, t, y, DKDLossOptions().temperature(-2)), HasSubstr("dkd_loss: temperature must be > 0, got -2"));
  EXPECT_THAT(msg(s, t, torch::tensor({0, 3}), {}), HasSubstr("dkd_loss: targets[1] = 3 is outside [0, 3)"));
  EXPECT_THAT(msg(torch::randn({2, 1}), torch::randn({2, 1}), torch::tensor({0, 0}), {}),
              HasSubstr("DKD needs at least 2 classes"));
  EXPECT_THAT(msg(s, torch::randn({2, 4}), y, {}), HasSubstr("must have the same shape"));
}

}  // namespace kdistill::test
