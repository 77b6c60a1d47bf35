// Per-token losses on [B, L, V]: masked, averaged over real tokens, against double-precision
// loops over ragged sequences.
#include "kdistill/losses/tokens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "losses/formulas.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;
using formulas::Vec;

// Ragged next-token targets: row b counts its first len[b] positions, the rest are padding.
torch::Tensor ragged_targets(const std::vector<int64_t>& lengths, int64_t L, int64_t V, uint64_t seed) {
  torch::manual_seed(seed);
  auto y = torch::randint(0, V, {static_cast<int64_t>(lengths.size()), L}, torch::kLong);
  for (size_t b = 0; b < lengths.size(); ++b) y[b].narrow(0, lengths[b], L - lengths[b]).fill_(-1);
  return y;
}

Vec at(const torch::Tensor& x, int64_t b, int64_t t) {
  auto r = x[b][t].to(torch::kDouble).contiguous();
  return Vec(r.data_ptr<double>(), r.data_ptr<double>() + r.numel());
}

}  // namespace

TEST(TokenLosses, CrossEntropyIsTheMeanOverRealTokensOrTheMeanSequenceSum) {
  const std::vector<int64_t> lengths{5, 2, 0, 3};
  const int64_t L = 5, V = 7;
  auto y = ragged_targets(lengths, L, V, 1);
  auto logits = torch::randn({4, L, V}) * 2;
  double sum = 0;
  int64_t tokens = 0;
  for (int64_t b = 0; b < 4; ++b) {
    for (int64_t t = 0; t < lengths[b]; ++t) {
      auto p = formulas::softmax(at(logits, b, t));
      sum -= std::log(p[y[b][t].item<int64_t>()]);
      ++tokens;
    }
  }
  EXPECT_NEAR(token_cross_entropy(logits, y).item<double>(), sum / tokens, 1e-5);
  EXPECT_NEAR(token_cross_entropy(logits, y, TokenReduction::kSequenceSum).item<double>(), sum / 4, 1e-5);
  // The padded length does not matter: more padding columns, the same loss.
  auto wider_y = torch::cat({y, torch::full({4, 3}, -1, torch::kLong)}, 1);
  auto wider = torch::cat({logits, torch::randn({4, 3, V}) * 50}, 1);
  EXPECT_NEAR(token_cross_entropy(wider, wider_y).item<double>(), sum / tokens, 1e-5);
  // Nothing counts: 0, with a gradient of 0.
  auto none = torch::full({2, 3}, -1, torch::kLong);
  auto s = torch::randn({2, 3, V}, torch::requires_grad());
  auto zero = token_cross_entropy(s, none);
  zero.backward();
  EXPECT_EQ(zero.item<double>(), 0.0);
  EXPECT_EQ(s.grad().abs().sum().item<double>(), 0.0);
}

TEST(TokenLosses, EveryObjectiveSeesOneRowPerRealTokenThroughTokenContext) {
  const std::vector<int64_t> lengths{4, 1, 3};
  const int64_t L = 4, V = 6;
  auto y = ragged_targets(lengths, L, V, 2);
  StepContext ctx;
  ctx.student_logits = torch::randn({3, L, V}, torch::kDouble);
  ctx.teacher_logits = torch::randn({3, L, V}, torch::kDouble) * 2;
  ctx.targets = y;
  for (const auto& kind : formulas::kKinds) {
    for (double T : {1.0, 2.0}) {
      double sum = 0;
      int64_t tokens = 0;
      for (int64_t b = 0; b < 3; ++b) {
        for (int64_t t = 0; t < lengths[b]; ++t) {
          sum += T * T * formulas::divergence_of(kind, formulas::softmax(at(ctx.teacher_logits, b, t), T),
                                                 formulas::softmax(at(ctx.student_logits, b, t), T), 0.5, 0.1);
          ++tokens;
        }
      }
      DivergenceObjective objective(DivergenceOptions().kind(kind).temperature(T));
      auto terms = objective.terms(token_context(ctx));
      ASSERT_EQ(terms.size(), 1u);
      EXPECT_NEAR(terms[0].value.item<double>(), sum / tokens, 1e-9) << kind << " T=" << T;
    }
  }
  // KD's label term is the token cross-entropy; its soft term the KL over the same tokens.
  auto kd = KDObjective(KDLossOptions().alpha(0.5).temperature(1)).terms(token_context(ctx));
  ASSERT_EQ(kd.size(), 2u);
  const auto& ce = kd[0].name == "ce" ? kd[0] : kd[1];
  ASSERT_EQ(ce.name, "ce");
  EXPECT_NEAR(ce.value.item<double>(), token_cross_entropy(ctx.student_logits, y).item<double>(), 1e-9);
  auto tc = token_context(ctx);
  EXPECT_EQ(tc.student_logits.size(0), 8);
  EXPECT_TRUE(tc.targets.equal(select_tokens(y.unsqueeze(2), y).squeeze(1)));
  EXPECT_TRUE(tc.all_labelled);
}

TEST(TokenLosses, Bf16LogitsArePromotedBeforeTheSoftmax) {
  auto y = ragged_targets({6, 6}, 6, 50, 3);
  auto logits = torch::randn({2, 6, 50}) * 8;
  const double fp32 = token_cross_entropy(logits.to(torch::kBFloat16).to(torch::kFloat), y).item<double>();
  auto low = token_cross_entropy(logits.to(torch::kBFloat16), y);
  EXPECT_EQ(low.scalar_type(), torch::kFloat);
  EXPECT_NEAR(low.item<double>(), fp32, 1e-5);
}

TEST(TokenLosses, RefusesMismatchedShapesAndUnknownReductions) {
  EXPECT_THAT(error_of([] { token_cross_entropy(torch::randn({2, 3, 4}), torch::zeros({2, 4}, torch::kLong)); }),
              HasSubstr("values must be [B, L, ...] with [B, L] = [2, 4]"));
  EXPECT_THAT(error_of([] { token_cross_entropy(torch::randn({2, 3, 4}), torch::zeros({2}, torch::kLong)); }),
              HasSubstr("targets must be [B, L]"));
  EXPECT_THAT(error_of([] { parse_token_reduction("sum"); }), HasSubstr("mean or sequence_sum, got \"sum\""));
  EXPECT_EQ(to_string(parse_token_reduction("sequence_sum")), "sequence_sum");
  StepContext ctx;
  ctx.student_logits = torch::randn({2, 3, 4});
  ctx.teacher_logits = torch::randn({2, 3, 5});
  ctx.targets = torch::zeros({2, 3}, torch::kLong);
  EXPECT_THAT(error_of([&] { token_context(ctx); }), HasSubstr("do not match the student's"));
}

}  // namespace kdistill::test
