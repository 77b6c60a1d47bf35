// Sparse (top-k) teacher targets and the divergences against them, checked against
// element-by-element double-precision computations of the bucket formulas in sparse.h.
#include "kdistill/losses/sparse.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "losses/formulas.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;
using formulas::divergence_of;
using formulas::kKinds;
using formulas::row;
using formulas::softmax;
using formulas::Vec;

Vec normalised(Vec b) {
  double z = 0;
  for (double v : b) z += v;
  for (auto& v : b) v /= z;
  return b;
}

// The header's formula for one position: the teacher's top-k classes (by its logits) and a tail
// bucket, softened at T (the student's tail exactly, the teacher's shaped like the student's), the
// divergence times T^2.
// `shape_from`, when given, is the student whose tail shapes the teacher's (held fixed, as the
// loss holds it: no gradient flows through the estimate).
double reference(const std::string& kind, const Vec& s, const Vec& t, int64_t k, double T, double beta = 0.5,
                 double skew = 0.1, const Vec* shape_from = nullptr) {
  const Vec p = softmax(t), q = softmax(s), qs = shape_from ? softmax(*shape_from) : q;
  std::vector<size_t> order(t.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return t[a] > t[b]; });
  Vec pb, qb;
  for (int64_t i = 0; i < k; ++i) {
    pb.push_back(std::pow(p[order[i]], 1 / T));
    qb.push_back(std::pow(q[order[i]], 1 / T));
  }
  if (k < static_cast<int64_t>(t.size())) {
    double p_tail = 0, qs_tail = 0, qs_tail_t = 0, q_tail_t = 0;  // sums over the tail, not 1 - sum
    for (size_t i = k; i < t.size(); ++i) {
      p_tail += p[order[i]];
      qs_tail += qs[order[i]];
      qs_tail_t += std::pow(qs[order[i]], 1 / T);
      q_tail_t += std::pow(q[order[i]], 1 / T);
    }
    pb.push_back(std::pow(p_tail / qs_tail, 1 / T) * qs_tail_t);
    qb.push_back(q_tail_t);
  }
  return T * T * divergence_of(kind, normalised(pb), normalised(qb), beta, skew);
}


}  // namespace

TEST(TopKTargets, HoldTheTopClassesTheirLogProbabilitiesAndTheTailMass) {
  torch::manual_seed(1);
  auto t = torch::randn({3, 2, 7}, torch::kDouble) * 3;
  auto targets = topk_targets(t, 3);
  ASSERT_EQ(targets.indices.sizes(), torch::IntArrayRef({3, 2, 3}));
  ASSERT_EQ(targets.log_tail.sizes(), torch::IntArrayRef({3, 2}));
  for (int64_t r = 0; r < 6; ++r) {
    const Vec logits = row(t, r), p = softmax(logits);
    std::vector<size_t> order(7);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] > logits[b]; });
    auto idx = targets.indices.reshape({-1, 3})[r], lp = targets.log_probs.reshape({-1, 3})[r];
    double tail = 0;
    for (size_t i = 3; i < 7; ++i) tail += p[order[i]];
    for (int64_t i = 0; i < 3; ++i) {
      EXPECT_EQ(idx[i].item<int64_t>(), static_cast<int64_t>(order[i])) << "position " << r;
      EXPECT_NEAR(lp[i].item<double>(), std::log(p[order[i]]), 1e-12) << "position " << r;
    }
    EXPECT_NEAR(targets.log_tail.reshape({-1})[r].item<double>(), std::log(tail), 1e-12) << "position " << r;
  }
  // A tail far below float32's epsilon of 1 keeps its logarithm (computed with logsumexp, not 1 - sum).
  auto peaked = topk_targets(torch::tensor({{80.0f, 0.0f, 0.0f}}), 1);
  EXPECT_NEAR(peaked.log_tail.item<double>(), std::log(2.0) - 80.0, 1e-4);
  // k = C: every class, no tail.
  EXPECT_TRUE(std::isinf(topk_targets(t, 7).log_tail.max().item<double>()));
}

TEST(SparseDivergence, EachKindMatchesTheBucketFormula) {
  torch::manual_seed(2);
  auto s = torch::randn({4, 6}, torch::kDouble) * 2, t = torch::randn({4, 6}, torch::kDouble) * 3;
  for (int64_t k : {1, 2, 4}) {
    auto targets = topk_targets(t, k);
    for (const auto& kind : kKinds) {
      for (double T : {1.0, 3.0}) {
        auto d = sparse_divergence(s, targets, DivergenceOptions().kind(kind).temperature(T).beta(0.3).skew(0.2));
        ASSERT_EQ(d.sizes(), torch::IntArrayRef({4}));
        for (int64_t r = 0; r < 4; ++r) {
          EXPECT_NEAR(d[r].item<double>(), reference(kind, row(s, r), row(t, r), k, T, 0.3, 0.2), 1e-10)
              << kind << " k=" << k << " T=" << T << " row " << r;
        }
      }
    }
  }
}

// With every class kept there is no tail, and the sparse divergence is the dense one at any T.
TEST(SparseDivergence, WithAllClassesEqualsTheDenseDivergence) {
  torch::manual_seed(3);
  auto s = torch::randn({5, 2, 9}) * 2, t = torch::randn({5, 2, 9}) * 3;
  auto targets = topk_targets(t, 9);
  for (const auto& kind : kKinds) {
    for (double T : {1.0, 4.0}) {
      const auto o = DivergenceOptions().kind(kind).temperature(T);
      EXPECT_TRUE(torch::allclose(sparse_divergence(s, targets, o), divergence(s, t, o), 1e-5, 1e-6))
          << kind << " T=" << T;
    }
  }
  // The gradient too.
  auto s1 = s.clone().requires_grad_(), s2 = s.clone().requires_grad_();
  sparse_divergence_loss(s1, targets, DivergenceOptions().temperature(4)).backward();
  divergence_loss(s2, t, DivergenceOptions().temperature(4)).backward();
  EXPECT_TRUE(torch::allclose(s1.grad(), s2.grad(), 1e-5, 1e-7));
}

// The gradient is the divergence's with the targets held fixed: at T = 1 the buckets' own
// gradient, at T != 1 with the teacher's tail estimate frozen at the current student.
TEST(SparseDivergence, GradientMatchesCentralDifferencesAndTargetsGetNone) {
  torch::manual_seed(4);
  auto t = torch::randn({3, 5}, torch::kDouble) * 2;
  auto targets = topk_targets(t, 2);
  targets.log_probs.requires_grad_();
  const double eps = 1e-6;
  for (const auto& kind : kKinds) {
    for (double T : {1.0, 2.0}) {
      auto s = (torch::randn({3, 5}, torch::kDouble) * 2).requires_grad_();
      const auto o = DivergenceOptions().kind(kind).temperature(T).beta(0.3).skew(0.2);
      sparse_divergence(s, targets, o).sum().backward();
      for (int64_t i = 0; i < 3; ++i) {
        const Vec si = row(s, i), ti = row(t, i);
        for (int64_t j = 0; j < 5; ++j) {
          Vec plus = si, minus = si;
          plus[j] += eps;
          minus[j] -= eps;
          const double numeric = (reference(kind, plus, ti, 2, T, 0.3, 0.2, &si) -
                                  reference(kind, minus, ti, 2, T, 0.3, 0.2, &si)) / (2 * eps);
          EXPECT_NEAR(s.grad()[i][j].item<double>(), numeric, 1e-7) << kind << " T=" << T << " (" << i << "," << j << ")";
        }
      }
    }
  }
  EXPECT_FALSE(targets.log_probs.grad().defined());
}

// Stored as a cache stores them (float16 log-probabilities, int32 indices), [B, L, C] with a mask.
TEST(SparseDivergence, TokensWithAMaskAndStoredPrecision) {
  torch::manual_seed(5);
  auto s = torch::randn({2, 4, 11}) * 2, t = torch::randn({2, 4, 11}) * 3;
  auto full = topk_targets(t, 4);
  TopKTargets stored{full.indices.to(torch::kInt), full.log_probs.to(torch::kHalf), full.log_tail};
  auto mask = torch::tensor({{1, 1, 1, 0}, {1, 1, 0, 0}}, torch::kBool);
  auto d = sparse_divergence(s, full);
  const double expect = (d.masked_select(mask)).mean().item<double>();
  EXPECT_NEAR(sparse_divergence_loss(s, full, {}, mask).item<double>(), expect, 1e-6);
  // float16 keeps ~3 decimal digits of each log-probability: the loss moves by far less than 1%.
  EXPECT_NEAR(sparse_divergence_loss(s, stored, {}, mask).item<double>(), expect, 1e-2 * expect);
}

TEST(SparseDivergence, RefusesBadTargets) {
  auto s = torch::randn({2, 5});
  auto good = topk_targets(torch::randn({2, 5}), 2);
  auto msg = [&](TopKTargets t) { return error_of([&] { sparse_divergence(s, t); }); };
  TopKTargets wrong_rows{good.indices.narrow(0, 0, 1), good.log_probs.narrow(0, 0, 1), good.log_tail.narrow(0, 0, 1)};
  EXPECT_THAT(msg(wrong_rows), HasSubstr("indices must be [..., k] over the student's [2, 5], got [1, 2]"));
  TopKTargets out_of_range{good.indices + 4, good.log_probs, good.log_tail};
  EXPECT_THAT(msg(out_of_range), HasSubstr("indices must be in [0, 5)"));
  TopKTargets float_indices{good.indices.to(torch::kFloat), good.log_probs, good.log_tail};
  EXPECT_THAT(msg(float_indices), HasSubstr("indices must be integers"));
  TopKTargets bad_tail{good.indices, good.log_probs, good.log_tail.unsqueeze(1)};
  EXPECT_THAT(msg(bad_tail), HasSubstr("log_tail must be [2], got [2, 1]"));
  EXPECT_THAT(msg(TopKTargets{}), HasSubstr("the targets are incomplete"));
  EXPECT_THAT(error_of([&] { topk_targets(s, 6); }), HasSubstr("topk_targets: k must be in [1, 5], got 6"));
  EXPECT_THAT(error_of([&] { sparse_divergence(s, good, DivergenceOptions().temperature(0)); }),
              HasSubstr("temperature"));
}

// Sampled targets: S draws from softmax(t / T), kept as distinct classes with their shares, the
// teacher's log-probabilities there and its top-1, checked element by element in double.
TEST(SampledTargets, AreTheDrawsSharesWithTheTeachersLogProbabilities) {
  torch::manual_seed(1);
  auto t = torch::randn({5, 9}) * 2;
  const double T = 2.0;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
  auto st = sampled_targets(t, 8, T, gen);
  ASSERT_EQ(st.indices.sizes(), torch::IntArrayRef({5, 8}));
  ASSERT_EQ(st.top1.sizes(), torch::IntArrayRef({5}));
  EXPECT_EQ(st.temperature, T);
  for (int64_t r = 0; r < 5; ++r) {
    const auto p = softmax(row(t, r), T);
    double total = 0, last = 1;
    std::vector<int64_t> seen;
    for (int64_t j = 0; j < 8; ++j) {
      const int64_t c = st.indices[r][j].item<int64_t>();
      const double w = st.weights[r][j].item<double>();
      if (c < 0) {  // padding, after every drawn class
        EXPECT_EQ(w, 0);
        EXPECT_EQ(st.log_probs[r][j].item<double>(), 0);
        continue;
      }
      EXPECT_EQ(std::count(seen.begin(), seen.end(), c), 0) << "class " << c << " kept twice";
      seen.push_back(c);
      EXPECT_LE(w, last + 1e-12);  // most drawn first
      EXPECT_NEAR(w * 8, std::round(w * 8), 1e-6);  // a share of 8 draws
      EXPECT_NEAR(st.log_probs[r][j].item<double>(), std::log(p[c]), 1e-5);
      total += w;
      last = w;
    }
    EXPECT_NEAR(total, 1.0, 1e-6);
    EXPECT_EQ(st.top1[r].item<int64_t>(), std::max_element(p.begin(), p.end()) - p.begin());
  }
  // The shares of many draws are the teacher's probabilities (within 5 standard errors).
  auto many = sampled_targets(t.narrow(0, 0, 1), 20000, T, gen);
  const auto p = softmax(row(t, 0), T);
  std::vector<double> share(9, 0.0);
  for (int64_t j = 0; j < 20000; ++j) {
    const int64_t c = many.indices[0][j].item<int64_t>();
    if (c >= 0) share[c] += many.weights[0][j].item<double>();
  }
  for (int64_t c = 0; c < 9; ++c) EXPECT_NEAR(share[c], p[c], 5 * std::sqrt(p[c] * (1 - p[c]) / 20000) + 1e-9) << c;
  // Seeded: the same generator state gives the same draws.
  auto g1 = at::make_generator<at::CPUGeneratorImpl>(3), g2 = at::make_generator<at::CPUGeneratorImpl>(3);
  EXPECT_TRUE(torch::equal(sampled_targets(t, 4, 1.0, g1).indices, sampled_targets(t, 4, 1.0, g2).indices));
}

// The sampled KL over many independent draws: its mean is the dense T^2 KL(p_T || q_T) and the
// mean of its gradient the dense gradient T (q_T - p_T), both computed in double from the
// formulas; within 5 standard errors of the draws' own spread.
TEST(SampledKl, IsUnbiasedForTheDenseKlAndItsGradient) {
  torch::manual_seed(2);
  const int64_t C = 7, M = 4000, S = 4;
  const double T = 2.0;
  auto s = torch::randn({2, C}, torch::kDouble) * 2, t = torch::randn({2, C}, torch::kDouble) * 3;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto targets = sampled_targets(t.repeat({M, 1}), S, T, gen);  // row m * 2 + r draws for position r
  auto s_rep = s.repeat({M, 1}).requires_grad_();
  auto values = sampled_kl(s_rep, targets);
  values.sum().backward();
  auto v = values.detach().reshape({M, 2});
  auto g = s_rep.grad().reshape({M, 2, C});
  for (int64_t r = 0; r < 2; ++r) {
    const auto p = softmax(row(t, r), T), q = softmax(row(s, r), T);
    const double dense = T * T * formulas::kl(p, q);
    auto vr = v.select(1, r);
    EXPECT_NEAR(vr.mean().item<double>(), dense, 5 * vr.std().item<double>() / std::sqrt(M)) << r;
    for (int64_t c = 0; c < C; ++c) {
      auto gc = g.select(1, r).select(1, c);
      const double want = T * (q[c] - p[c]);
      EXPECT_NEAR(gc.mean().item<double>(), want, 5 * gc.std().item<double>() / std::sqrt(M) + 1e-12) << r << "," << c;
    }
  }
  // One draw set alone is not the dense value: the estimate has spread (S = 4 of 7 classes).
  EXPECT_GT(v.std().item<double>(), 1e-3);
}

// The gradient of the sampled KL for fixed draws matches central differences, and masked
// positions drop out of the mean.
TEST(SampledKl, GradientMatchesFiniteDifferencesAndTheMaskSelects) {
  torch::manual_seed(3);
  auto s = torch::randn({3, 6}, torch::kDouble), t = torch::randn({3, 6}, torch::kDouble);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  auto targets = sampled_targets(t, 5, 1.5, gen);
  auto x = s.clone().requires_grad_();
  sampled_kl(x, targets).sum().backward();
  const double h = 1e-6;
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t c = 0; c < 6; ++c) {
      auto up = s.clone(), down = s.clone();
      up[r][c] += h;
      down[r][c] -= h;
      const double fd = (sampled_kl(up, targets).sum().item<double>() - sampled_kl(down, targets).sum().item<double>()) / (2 * h);
      EXPECT_NEAR(x.grad()[r][c].item<double>(), fd, 1e-6) << r << "," << c;
    }
  }
  auto mask = torch::tensor({1, 0, 1}, torch::kBool);
  auto per = sampled_kl(s, targets);
  EXPECT_NEAR(sampled_kl_loss(s, targets, mask).item<double>(), (per[0] + per[2]).item<double>() / 2, 1e-12);
}

TEST(SampledKl, RefusesBadTargets) {
  auto s = torch::randn({2, 5});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1);
  auto good = sampled_targets(torch::randn({2, 5}), 3, 1.0, gen);
  auto msg = [&](SampledTargets t) { return error_of([&] { sampled_kl(s, t); }); };
  auto bad = good;
  bad.indices = good.indices + 5;
  EXPECT_THAT(msg(bad), HasSubstr("indices must be in [0, 5) or -1 (padding)"));
  bad = good;
  bad.weights = good.weights.narrow(1, 0, 2);
  EXPECT_THAT(msg(bad), HasSubstr("weights and log_probs must have the indices' shape [2, 3]"));
  bad = good;
  bad.temperature = 0;
  EXPECT_THAT(msg(bad), HasSubstr("temperature must be > 0"));
  EXPECT_THAT(msg(SampledTargets{}), HasSubstr("the targets are incomplete"));
  EXPECT_THAT(error_of([&] { sampled_targets(s, 0, 1.0, gen); }), HasSubstr("samples must be >= 1, got 0"));
}

}  // namespace kdistill::test
