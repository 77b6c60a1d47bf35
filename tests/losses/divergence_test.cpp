// The divergences against element-by-element double-precision computations of their formulas.
#include "kdistill/losses/divergence.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/losses/kd_loss.h"
#include "losses/formulas.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;
using formulas::kKinds;
using formulas::kl;
using formulas::mix;
using formulas::row;
using formulas::softmax;
using formulas::Vec;

// The header's formula for one position, T^2 included; p the teacher's, q the student's.
double reference(const std::string& kind, const Vec& s, const Vec& t, double T, double beta = 0.5, double skew = 0.1) {
  return T * T * formulas::divergence_of(kind, softmax(t, T), softmax(s, T), beta, skew);
}

}  // namespace

TEST(Divergence, EachKindMatchesItsFormulaPerPosition) {
  torch::manual_seed(3);
  auto s = torch::randn({2, 3, 5}, torch::kDouble) * 2, t = torch::randn({2, 3, 5}, torch::kDouble) * 3;
  for (const auto& kind : kKinds) {
    for (double T : {1.0, 2.5}) {
      auto d = divergence(s, t, DivergenceOptions().kind(kind).temperature(T).beta(0.3).skew(0.2));
      ASSERT_EQ(d.sizes(), torch::IntArrayRef({2, 3})) << kind;
      auto flat = d.reshape({-1});
      for (int64_t r = 0; r < 6; ++r) {
        EXPECT_NEAR(flat[r].item<double>(), reference(kind, row(s, r), row(t, r), T, 0.3, 0.2), 1e-12)
            << kind << " T=" << T << " position " << r;
      }
    }
  }
}

TEST(Divergence, MaskedLossAveragesTheSelectedPositions) {
  torch::manual_seed(4);
  auto s = torch::randn({2, 4, 6}, torch::kDouble), t = torch::randn({2, 4, 6}, torch::kDouble);
  auto mask = torch::tensor({1, 1, 0, 0, 1, 1, 1, 0}, torch::kBool).reshape({2, 4});
  for (const auto& kind : kKinds) {
    double sum = 0, all = 0;
    for (int64_t r = 0; r < 8; ++r) {
      const double v = reference(kind, row(s, r), row(t, r), 2.0);
      all += v;
      if (mask.reshape({-1})[r].item<bool>()) sum += v;
    }
    const auto o = DivergenceOptions().kind(kind).temperature(2.0);
    EXPECT_NEAR(divergence_loss(s, t, o, mask).item<double>(), sum / 5, 1e-12) << kind;
    EXPECT_NEAR(divergence_loss(s, t, o).item<double>(), all / 8, 1e-12) << kind;
    // Float weights weight the positions; a mask that selects nothing gives 0, not NaN.
    auto w = mask.to(torch::kDouble) * 2;
    EXPECT_NEAR(divergence_loss(s, t, o, w).item<double>(), sum / 5, 1e-12) << kind;
    EXPECT_EQ(divergence_loss(s, t, o, torch::zeros({2, 4}, torch::kBool)).item<double>(), 0.0) << kind;
  }
}

TEST(Divergence, GradientMatchesCentralDifferencesAndTeacherGetsNone) {
  torch::manual_seed(5);
  const double eps = 1e-6;
  auto s0 = torch::randn({3, 4}, torch::kDouble), t0 = torch::randn({3, 4}, torch::kDouble) * 2;
  for (const auto& kind : kKinds) {
    const auto o = DivergenceOptions().kind(kind).temperature(1.7).beta(0.7).skew(0.1);
    auto s = s0.clone().requires_grad_(true), t = t0.clone().requires_grad_(true);
    divergence_loss(s, t, o).backward();
    EXPECT_FALSE(t.grad().defined()) << kind;
    for (int64_t i = 0; i < 3; ++i) {
      for (int64_t j = 0; j < 4; ++j) {
        auto plus = s0.clone(), minus = s0.clone();
        plus[i][j] += eps;
        minus[i][j] -= eps;
        double fp = 0, fm = 0;
        for (int64_t r = 0; r < 3; ++r) {
          fp += reference(kind, row(plus, r), row(t0, r), 1.7, 0.7, 0.1) / 3;
          fm += reference(kind, row(minus, r), row(t0, r), 1.7, 0.7, 0.1) / 3;
        }
        EXPECT_NEAR(s.grad()[i][j].item<double>(), (fp - fm) / (2 * eps), 1e-7) << kind << " (" << i << "," << j << ")";
      }
    }
  }
}

TEST(Divergence, RelationsBetweenKinds) {
  torch::manual_seed(6);
  auto s = torch::randn({8, 10}) * 2, t = torch::randn({8, 10}) * 2;
  // kl is KD's soft term; skew 0 is kl; jsd at beta 0.5 is symmetric; every kind is 0 at s = t.
  EXPECT_NEAR(divergence_loss(s, t, DivergenceOptions().temperature(4)).item<double>(),
              kd_soft_loss(s, t, 4).item<double>(), 1e-5);
  EXPECT_TRUE(torch::allclose(divergence(s, t, DivergenceOptions().kind("skew_kl").skew(0)), divergence(s, t)));
  EXPECT_TRUE(torch::allclose(divergence(s, t, DivergenceOptions().kind("jsd")),
                              divergence(t, s, DivergenceOptions().kind("jsd")), 1e-5, 1e-6));
  for (const auto& kind : kKinds) {
    EXPECT_LT(divergence(s, s, DivergenceOptions().kind(kind)).abs().max().item<double>(), 1e-5) << kind;
  }
  // Reduced-precision logits are promoted: bf16 gives a float32 result near the float32 one.
  auto b = divergence(s.to(torch::kBFloat16), t.to(torch::kBFloat16), DivergenceOptions().kind("jsd"));
  EXPECT_EQ(b.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::allclose(b, divergence(s, t, DivergenceOptions().kind("jsd")), 0.05, 0.01));
  // A teacher that puts (numerically) zero mass on a class: no NaN.
  auto sharp = torch::zeros({1, 3});
  sharp[0][0] = 200;
  for (const auto& kind : kKinds) {
    auto sg = torch::zeros({1, 3}, torch::requires_grad());
    auto l = divergence_loss(sg, sharp, DivergenceOptions().kind(kind));
    l.backward();
    EXPECT_TRUE(std::isfinite(l.item<double>()) && torch::isfinite(sg.grad()).all().item<bool>()) << kind;
  }
}

TEST(Divergence, BadInputsThrowNamingTheArgument) {
  auto s = torch::randn({2, 3}), t = torch::randn({2, 3});
  auto msg = [&](const DivergenceOptions& o, const torch::Tensor& a, const torch::Tensor& b,
                 const torch::Tensor& mask = {}) {
    return error_of([&] { divergence_loss(a, b, o, mask); });
  };
  EXPECT_THAT(msg(DivergenceOptions().kind("hellinger"), s, t), HasSubstr("divergence: kind must be kl, reverse_kl"));
  EXPECT_THAT(msg(DivergenceOptions().kind("jsd").beta(0), s, t), HasSubstr("divergence: beta must be in (0, 1), got 0"));
  EXPECT_THAT(msg(DivergenceOptions().kind("skew_kl").skew(1), s, t), HasSubstr("skew must be in [0, 1), got 1"));
  EXPECT_THAT(msg(DivergenceOptions().temperature(0), s, t), HasSubstr("divergence: temperature must be > 0, got 0"));
  EXPECT_THAT(msg({}, s, torch::randn({2, 4})), HasSubstr("must have the same shape"));
  EXPECT_THAT(msg({}, torch::randn({}), torch::randn({})), HasSubstr("student_logits must be [..., classes]"));
  EXPECT_THAT(msg({}, s, t, torch::ones({3})), HasSubstr("divergence_loss: mask must have the logits' shape"));
  auto nan = s.clone();
  nan[1][2] = NAN;
  EXPECT_THAT(msg({}, nan, t), HasSubstr("student_logits has a NaN or infinite value in row 1"));
}

}  // namespace kdistill::test
