// Tests for kdistill/teachers/teacher.h: frozen model teachers, callables and ensembles.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <tuple>
#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/models/builders.h"
#include "kdistill/models/model.h"
#include "kdistill/teachers/teacher.h"
#include "support.h"

namespace {

using kdistill::CallableTeacher;
using kdistill::EnsembleTeacher;
using kdistill::Model;
using kdistill::ModelTeacher;

torch::Tensor rows(int64_t n) { return torch::arange(n, torch::kLong); }

TEST(ModelTeacher, FreezesTheModel) {
  torch::manual_seed(0);
  Model model(kdistill::mlp(6, {16}, 3, 0.5), "mlp:16");
  model.train();
  for (const auto& p : model.parameters()) ASSERT_TRUE(p.requires_grad());
  ModelTeacher teacher(model);
  EXPECT_FALSE(model.is_training());  // the handle shares the module
  EXPECT_FALSE(teacher.model().is_training());
  for (const auto& [name, p] : model.named_parameters()) EXPECT_FALSE(p.requires_grad()) << name;
  EXPECT_EQ(teacher.describe(), "mlp:16");
  EXPECT_TRUE(teacher.runs_on_inputs());
  EXPECT_EQ(teacher.samples(), -1);
  EXPECT_THROW((void)ModelTeacher(Model()), kdistill::Error);
  EXPECT_EQ(ModelTeacher(Model(kdistill::mlp(2, {}, 2))).describe(), "model");  // no arch given
}

TEST(ModelTeacher, LogitsEqualEvalForwardWithoutGraph) {
  torch::manual_seed(1);
  auto net = kdistill::mlp(6, {16}, 3, 0.5);
  ModelTeacher teacher{Model(net)};
  const auto x = torch::randn({4, 6}, torch::requires_grad());
  const auto logits = teacher.logits(x, rows(4));
  EXPECT_FALSE(logits.requires_grad());
  EXPECT_TRUE(logits.grad_fn() == nullptr);
  EXPECT_EQ(logits.sizes().vec(), (std::vector<int64_t>{4, 3}));
  // Reference: the same network in eval mode (dropout off), computed directly.
  net->eval();
  torch::Tensor expected;
  {
    torch::NoGradGuard no_grad;
    expected = net->forward(x);
  }
  EXPECT_TRUE(torch::equal(logits, expected));
  EXPECT_TRUE(torch::equal(teacher.logits(x, rows(4)), logits));  // deterministic
  EXPECT_EQ(logits.device(), x.device());
}

TEST(CallableTeacher, CallsTheFunctionWithoutGrad) {
  int calls = 0;
  bool grad_enabled_inside = true;
  torch::Tensor seen;
  CallableTeacher teacher(
      [&](const torch::Tensor& x) {
        ++calls;
        seen = x;
        grad_enabled_inside = torch::GradMode::is_enabled();
        return x.flatten(1) * 3 + 1;
      },
      "rule");
  const auto x = torch::randn({4, 2, 2});
  const auto out = teacher.logits(x, rows(4));
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(seen.is_same(x));
  EXPECT_FALSE(grad_enabled_inside);
  EXPECT_TRUE(torch::allclose(out, x.flatten(1) * 3 + 1));
  EXPECT_EQ(teacher.describe(), "rule");
  EXPECT_THROW((void)CallableTeacher(std::function<torch::Tensor(const torch::Tensor&)>()), kdistill::Error);
}

std::shared_ptr<kdistill::Teacher> constant(torch::Tensor logits, std::string name) {
  return std::make_shared<CallableTeacher>([logits](const torch::Tensor&) { return logits; }, std::move(name));
}

TEST(EnsembleTeacher, SoftmaxIsMeanOfMemberSoftmaxes) {
  torch::manual_seed(2);
  // Members on very different logit scales.
  const auto a = torch::randn({5, 4});
  const auto b = torch::randn({5, 4}) * 10;
  const auto c = torch::randn({5, 4}) * 0.1 + 3;
  EnsembleTeacher ensemble({constant(a, "a"), constant(b, "b"), constant(c, "c")});
  EXPECT_EQ(ensemble.describe(), "ensemble(a,b,c)");
  const auto logits = ensemble.logits(torch::zeros({5, 1}), torch::arange(5, torch::kLong));
  ASSERT_EQ(logits.sizes().vec(), (std::vector<int64_t>{5, 4}));

  // Independent reference in double: mean of the members' softmax probabilities.
  auto softmax = [](const torch::Tensor& l) {
    const auto d = l.to(torch::kDouble);
    const auto e = (d - std::get<0>(d.max(1, true))).exp();
    return e / e.sum(1, true);
  };
  const auto mean_p = (softmax(a) + softmax(b) + softmax(c)) / 3.0;
  EXPECT_TRUE(torch::allclose(softmax(logits), mean_p, 0, 1e-6));
  EXPECT_TRUE(torch::allclose(logits.to(torch::kDouble), mean_p.log(), 1e-5, 1e-5));
  // Not the mean of the raw logits.
  EXPECT_FALSE(torch::allclose(softmax(logits), softmax((a + b + c) / 3), 0, 1e-3));
}

TEST(EnsembleTeacher, SingleMemberKeepsItsDistribution) {
  const auto a = torch::tensor({{1.0f, 2.0f, 3.0f}, {0.5f, -1.0f, 0.0f}});
  EnsembleTeacher one({constant(a, "a")});
  const auto l = one.logits(torch::zeros({2, 1}), torch::arange(2, torch::kLong));
  EXPECT_TRUE(torch::allclose(l, torch::log_softmax(a, 1), 1e-6, 1e-6));
}

TEST(EnsembleTeacher, RejectsBadMembers) {
  EnsembleTeacher mismatched({constant(torch::zeros({2, 3}), "a"), constant(torch::zeros({2, 4}), "b")});
  EXPECT_THROW(mismatched.logits(torch::zeros({2, 1}), torch::arange(2, torch::kLong)), kdistill::Error);
  EXPECT_THROW((void)EnsembleTeacher({constant(torch::zeros({2, 3}), "a"), nullptr}), kdistill::Error);
  EXPECT_THROW((void)EnsembleTeacher(std::vector<std::shared_ptr<kdistill::Teacher>>{}), kdistill::Error);
}

}  // namespace
