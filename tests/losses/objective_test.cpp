// Objectives against independent double-precision computations of their formulas.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/losses/attention.h"
#include "kdistill/losses/objective.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

// Softmax of one row at temperature T, in double, element by element.
std::vector<double> softmax_row(const torch::Tensor& logits, int64_t row, double T) {
  const int64_t C = logits.size(1);
  auto d = logits.detach().to(torch::kDouble).contiguous();
  auto acc = d.accessor<double, 2>();
  double mx = -1e300;
  for (int64_t c = 0; c < C; ++c) mx = std::max(mx, acc[row][c] / T);
  std::vector<double> p(C);
  double z = 0;
  for (int64_t c = 0; c < C; ++c) z += (p[c] = std::exp(acc[row][c] / T - mx));
  for (auto& v : p) v /= z;
  return p;
}

// T^2 * mean_i sum_c q_ic (log q_ic - log p_ic) with q the given target rows.
double kl_reference(const std::vector<std::vector<double>>& q, const torch::Tensor& s, double T,
                    const std::vector<double>& w = {}) {
  double num = 0, den = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    auto p = softmax_row(s, static_cast<int64_t>(i), T);
    double kl = 0;
    for (size_t c = 0; c < p.size(); ++c) kl += q[i][c] * (std::log(q[i][c]) - std::log(p[c]));
    const double wi = w.empty() ? 1.0 : w[i];
    num += wi * kl;
    den += wi;
  }
  return T * T * num / den;
}

double ce_reference(const torch::Tensor& s, const torch::Tensor& y) {
  double sum = 0;
  int64_t n = 0;
  for (int64_t i = 0; i < s.size(0); ++i) {
    const auto label = y[i].item<int64_t>();
    if (label < 0) continue;
    sum -= std::log(softmax_row(s, i, 1.0)[label]);
    ++n;
  }
  return n ? sum / n : 0.0;
}

StepContext context(int64_t B = 6, int64_t C = 5) {
  torch::manual_seed(11);
  StepContext c;
  c.student_logits = (torch::randn({B, C}) * 2).requires_grad_();
  c.teacher_logits = torch::randn({B, C}) * 3;
  c.targets = torch::randint(0, C, {B}, torch::kLong);
  c.targets[1] = -1;  // one unlabelled sample
  return c;
}

double value(const std::vector<LossTerm>& terms, const std::string& name) {
  for (const auto& t : terms) {
    if (t.name == name) return t.value.item<double>();
  }
  ADD_FAILURE() << "no term " << name;
  return NAN;
}

double weighted_sum(const std::vector<LossTerm>& terms) {
  double s = 0;
  for (const auto& t : terms) s += t.weight * t.value.item<double>();
  return s;
}

}  // namespace

TEST(Objective, KDTermsAreHintonsTermsWithTheirWeights) {
  auto c = context();
  KDObjective kd(KDLossOptions().temperature(3).alpha(0.7));
  auto terms = kd.terms(c);
  ASSERT_EQ(terms.size(), 2u);
  std::vector<std::vector<double>> q;
  for (int64_t i = 0; i < 6; ++i) q.push_back(softmax_row(c.teacher_logits, i, 3));
  EXPECT_NEAR(value(terms, "kd"), kl_reference(q, c.student_logits, 3), 1e-5);
  EXPECT_NEAR(value(terms, "ce"), ce_reference(c.student_logits, c.targets), 1e-5);
  EXPECT_DOUBLE_EQ(terms[0].weight, 0.7);
  EXPECT_NEAR(terms[1].weight, 0.3, 1e-15);
  // Their weighted sum is kd_loss.
  EXPECT_NEAR(weighted_sum(terms),
              kd_loss(c.student_logits, c.teacher_logits, c.targets, KDLossOptions().temperature(3).alpha(0.7))
                  .item<double>(),
              1e-6);
  // alpha 1 computes no label term, alpha 0 no soft term.
  EXPECT_EQ(KDObjective(KDLossOptions().alpha(1)).terms(c).size(), 1u);
  EXPECT_EQ(KDObjective(KDLossOptions().alpha(0)).terms(c).at(0).name, "ce");
}

TEST(Objective, CompositeIsTheWeightedSumOfItsTerms) {
  auto c = context();
  CompositeObjective loss;
  loss.add("soft", std::make_shared<KDObjective>(KDLossOptions().temperature(2).alpha(0.6)), 0.5)
      .add("ce", std::make_shared<CrossEntropyObjective>(), 0.25)
      .add("mse", std::make_shared<LogitMSEObjective>(), 2.0)
      .add("soft_ce", std::make_shared<SoftTargetCEObjective>(4.0), 0.1);
  auto terms = loss.terms(c);
  std::vector<std::string> names;
  for (const auto& t : terms) names.push_back(t.name);
  EXPECT_THAT(names, ::testing::ElementsAre("soft.kd", "soft.ce", "ce", "mse", "soft_ce"));

  // Independently: every piece from its formula in double precision.
  std::vector<std::vector<double>> q2, q4;
  double mse = 0, soft_ce = 0;
  for (int64_t i = 0; i < 6; ++i) {
    q2.push_back(softmax_row(c.teacher_logits, i, 2));
    q4.push_back(softmax_row(c.teacher_logits, i, 4));
    auto p4 = softmax_row(c.student_logits, i, 4);
    for (int64_t k = 0; k < 5; ++k) {
      const double d = c.student_logits[i][k].item<double>() - c.teacher_logits[i][k].item<double>();
      mse += d * d / 30.0;
      soft_ce -= q4[i][k] * std::log(p4[k]) * 16.0 / 6.0;
    }
  }
  const double ce = ce_reference(c.student_logits, c.targets);
  const double want = 0.5 * (0.6 * kl_reference(q2, c.student_logits, 2) + 0.4 * ce) + 0.25 * ce + 2.0 * mse + 0.1 * soft_ce;
  EXPECT_NEAR(weighted_sum(terms), want, 1e-5);
  EXPECT_NEAR(value(terms, "mse"), mse, 1e-5);
  EXPECT_NEAR(value(terms, "soft_ce"), soft_ce, 1e-5);
  EXPECT_TRUE(loss.needs_teacher());
  EXPECT_TRUE(loss.needs_labels());
}

TEST(Objective, CompositeRefusesBadEntries) {
  CompositeObjective loss;
  loss.add("a", std::make_shared<CrossEntropyObjective>());
  EXPECT_THAT(error_of([&] { loss.add("a", std::make_shared<CrossEntropyObjective>()); }),
              HasSubstr("'a' is added twice"));
  EXPECT_THAT(error_of([&] { loss.add("b.c", std::make_shared<CrossEntropyObjective>()); }), HasSubstr("no '.'"));
  EXPECT_THAT(error_of([&] { loss.add("d", nullptr); }), HasSubstr("'d' is null"));
  EXPECT_THAT(error_of([&] { loss.add("e", std::make_shared<CrossEntropyObjective>(), NAN); }), HasSubstr("finite"));
}

TEST(Objective, EnsembleSoftTargetsSoftenEachMemberAtT) {
  auto c = context();
  torch::manual_seed(12);
  auto a = torch::randn({6, 5}) * 4, b = torch::randn({6, 5}), d = torch::randn({6, 5}) * 2;
  c.member_logits = {a, b, d};
  c.member_weights = {0.5, 0.3, 0.2};
  const double T = 3;
  auto got = teacher_log_probs(c, T);
  std::vector<std::vector<double>> q;
  for (int64_t i = 0; i < 6; ++i) {
    auto pa = softmax_row(a, i, T), pb = softmax_row(b, i, T), pd = softmax_row(d, i, T);
    std::vector<double> row(5);
    for (int k = 0; k < 5; ++k) {
      row[k] = 0.5 * pa[k] + 0.3 * pb[k] + 0.2 * pd[k];
      EXPECT_NEAR(got[i][k].item<double>(), std::log(row[k]), 1e-5);
    }
    q.push_back(row);
  }
  // Not the T = 1 average softened again: that differs on these logits.
  auto avg1 = torch::log((0.5 * torch::softmax(a, 1) + 0.3 * torch::softmax(b, 1) + 0.2 * torch::softmax(d, 1)));
  EXPECT_GT((torch::log_softmax(avg1 / T, 1) - got).abs().max().item<double>(), 1e-2);
  // KD distils towards exactly these targets.
  EXPECT_NEAR(value(KDObjective(KDLossOptions().temperature(T).alpha(1)).terms(c), "kd"),
              kl_reference(q, c.student_logits, T), 1e-5);
}

TEST(Objective, SampleWeightsWeightEachSample) {
  auto c = context();
  c.sample_weights = torch::tensor({1.0, 0.0, 2.0, 0.5, 1.0, 3.0}, torch::kFloat);
  const std::vector<double> w = {1.0, 0.0, 2.0, 0.5, 1.0, 3.0};
  std::vector<std::vector<double>> q;
  for (int64_t i = 0; i < 6; ++i) q.push_back(softmax_row(c.teacher_logits, i, 2));
  auto terms = KDObjective(KDLossOptions().temperature(2).alpha(0.5)).terms(c);
  EXPECT_NEAR(value(terms, "kd"), kl_reference(q, c.student_logits, 2, w), 1e-5);
  // Label term: weighted mean over the labelled samples only (sample 1 has no label and weight 0).
  double num = 0, den = 0;
  for (int64_t i = 0; i < 6; ++i) {
    const auto label = c.targets[i].item<int64_t>();
    if (label < 0) continue;
    num -= w[i] * std::log(softmax_row(c.student_logits, i, 1)[label]);
    den += w[i];
  }
  EXPECT_NEAR(value(terms, "ce"), num / den, 1e-5);
}

TEST(Objective, HintIsTheMseOfTheAdaptedStudentFeatureAndTrainsTheAdapter) {
  torch::manual_seed(5);
  HintObjective hint(HintOptions("s", "t").student_channels(3).teacher_channels(4));
  StepContext c;
  c.student_features["s"] = torch::randn({2, 3, 5, 5}).requires_grad_();
  c.teacher_features["t"] = torch::randn({2, 4, 5, 5});
  auto terms = hint.terms(c);
  ASSERT_EQ(terms.size(), 1u);
  auto params = hint.named_parameters();
  auto weight = params["adapter.weight"].detach().to(torch::kDouble), bias = params["adapter.bias"].detach().to(torch::kDouble);
  // 1x1 convolution by hand: out[b, o, h, w] = sum_i W[o, i] x[b, i, h, w] + bias[o].
  auto x = c.student_features["s"].detach().to(torch::kDouble);
  auto adapted = torch::einsum("oi,bihw->bohw", {weight.flatten(1), x}) + bias.view({1, 4, 1, 1});
  const double want = (adapted - c.teacher_features["t"].to(torch::kDouble)).pow(2).mean().item<double>();
  EXPECT_NEAR(terms[0].value.item<double>(), want, 1e-5);
  terms[0].value.backward();
  EXPECT_TRUE(params["adapter.weight"].grad().defined());
  EXPECT_GT(params["adapter.weight"].grad().abs().sum().item<double>(), 0);
  EXPECT_EQ(hint.student_features(), std::vector<std::string>{"s"});
  // A shape that the adapter cannot map is refused with both shapes named.
  c.teacher_features["t"] = torch::randn({2, 4, 6, 6});
  EXPECT_THAT(error_of([&] { hint.terms(c); }), HasSubstr("[2, 4, 6, 6]"));
}

TEST(Objective, GradientCheckOfTheEnsembleKDTerm) {
  auto c = context(3, 4);
  c.student_logits = c.student_logits.detach().to(torch::kDouble).requires_grad_();
  c.member_logits = {c.teacher_logits.to(torch::kDouble), (c.teacher_logits * 0.5).to(torch::kDouble)};
  c.member_weights = {0.7, 0.3};
  c.teacher_logits = c.teacher_logits.to(torch::kDouble);
  KDObjective kd(KDLossOptions().temperature(2).alpha(1));
  auto loss = kd.terms(c).at(0).value;
  auto grad = torch::autograd::grad({loss}, {c.student_logits})[0];
  const double eps = 1e-6;
  for (int64_t i = 0; i < 3; ++i) {
    for (int64_t k = 0; k < 4; ++k) {
      auto plus = c, minus = c;
      plus.student_logits = c.student_logits.detach().clone();
      minus.student_logits = c.student_logits.detach().clone();
      plus.student_logits[i][k] += eps;
      minus.student_logits[i][k] -= eps;
      const double numeric =
          (kd.terms(plus).at(0).value.item<double>() - kd.terms(minus).at(0).value.item<double>()) / (2 * eps);
      EXPECT_NEAR(grad[i][k].item<double>(), numeric, 1e-6);
    }
  }
}

TEST(Objective, DivergenceOfAnEnsembleWithSampleWeights) {
  // jsd(beta 0.3) at T = 2 towards the members' mixture, each sample weighted: a double reference.
  auto c = context();
  torch::manual_seed(21);
  auto a = torch::randn({6, 5}) * 2, b = torch::randn({6, 5});
  c.member_logits = {a, b};
  c.member_weights = {0.25, 0.75};
  c.sample_weights = torch::tensor({1.0, 0.0, 2.0, 0.5, 1.0, 3.0}, torch::kFloat);
  const std::vector<double> w = {1.0, 0.0, 2.0, 0.5, 1.0, 3.0};
  const double T = 2, beta = 0.3;
  double num = 0, den = 0;
  for (int64_t i = 0; i < 6; ++i) {
    auto pa = softmax_row(a, i, T), pb = softmax_row(b, i, T), q = softmax_row(c.student_logits, i, T);
    double kl_p = 0, kl_q = 0;
    for (int k = 0; k < 5; ++k) {
      const double p = 0.25 * pa[k] + 0.75 * pb[k], m = beta * p + (1 - beta) * q[k];
      kl_p += p * std::log(p / m);
      kl_q += q[k] * std::log(q[k] / m);
    }
    num += w[i] * (beta * kl_p + (1 - beta) * kl_q);
    den += w[i];
  }
  auto terms = DivergenceObjective(DivergenceOptions().kind("jsd").beta(beta).temperature(T)).terms(c);
  ASSERT_EQ(terms.size(), 1u);
  EXPECT_EQ(terms[0].name, "jsd");
  EXPECT_NEAR(terms[0].value.item<double>(), T * T * num / den, 1e-5);
  EXPECT_THROW(DivergenceObjective(DivergenceOptions().kind("chi2")), Error);
}

TEST(Objective, DKDTermsAreTckdAndNckdWithAlphaAndBeta) {
  auto c = context();  // sample 1 is unlabelled: the teacher's top class stands in
  auto terms = DKDObjective(DKDLossOptions().alpha(2).beta(5).temperature(3)).terms(c);
  ASSERT_EQ(terms.size(), 2u);
  EXPECT_EQ(terms[0].name, "tckd");
  EXPECT_EQ(terms[0].weight, 2);
  EXPECT_EQ(terms[1].name, "nckd");
  EXPECT_EQ(terms[1].weight, 5);
  auto y = c.targets.clone();
  y[1] = c.teacher_logits[1].argmax();
  EXPECT_NEAR(weighted_sum(terms), dkd_loss(c.student_logits, c.teacher_logits, y,
                                            DKDLossOptions().alpha(2).beta(5).temperature(3)).item<double>(), 1e-5);
}

TEST(Objective, AttentionTransferSumsItsLayerPairs) {
  auto c = context(4);
  c.student_features = {{"s1", torch::randn({4, 3, 8, 8})}, {"s2", torch::randn({4, 6, 4, 4})}};
  c.teacher_features = {{"t1", torch::randn({4, 8, 8, 8})}, {"t2", torch::randn({4, 16, 2, 2})}};
  AttentionTransferObjective at(AttentionTransferOptions({{"s1", "t1"}, {"s2", "t2"}}));
  EXPECT_EQ(at.student_features(), (std::vector<std::string>{"s1", "s2"}));
  EXPECT_EQ(at.teacher_features(), (std::vector<std::string>{"t1", "t2"}));
  auto expected = (attention_transfer(c.student_features["s1"], c.teacher_features["t1"]) +
                   attention_transfer(c.student_features["s2"], c.teacher_features["t2"]))
                      .mean();
  EXPECT_NEAR(value(at.terms(c), "at"), expected.item<double>(), 1e-6);
  c.student_features.erase("s2");
  EXPECT_THROW(at.terms(c), Error);
  EXPECT_THROW(AttentionTransferObjective(AttentionTransferOptions({})), Error);
}

TEST(Objective, SchedulesMoveTemperatureAndWeightsWithProgress) {
  auto c = context();
  auto kd = std::make_shared<KDObjective>(KDLossOptions().alpha(1));
  kd->set_temperature(Schedule(ScheduleOptions().kind("linear").start(8).end(2)));  // over the run
  c.progress = TrainProgress{50, 5, 100, 10};  // halfway: T = 5
  EXPECT_NEAR(value(kd->terms(c), "kd"), kd_soft_loss(c.student_logits, c.teacher_logits, 5).item<double>(), 1e-5);
  CompositeObjective loss;
  loss.add("kd", kd, Schedule(ScheduleOptions().kind("linear").start(0).end(1).span_epochs(20)));
  auto terms = loss.terms(c);  // epoch 5 of a 20-epoch warm-up
  ASSERT_EQ(terms.size(), 1u);
  EXPECT_DOUBLE_EQ(terms[0].weight, 0.25);
  EXPECT_TRUE(loss.needs_teacher());  // a weight that starts at 0 still switches on
  CompositeObjective off;
  off.add("kd", kd, 0.0);
  EXPECT_FALSE(off.needs_teacher());
  EXPECT_THROW(kd->set_temperature(Schedule(ScheduleOptions().kind("linear").start(4).end(0))), Error);
}

}  // namespace kdistill::test

