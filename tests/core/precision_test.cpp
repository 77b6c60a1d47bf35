// bf16: parsing, CPU detection, the autocast region, bf16 copies of models and teachers, and
// losses that keep float32 precision on bf16 logits.
#include "kdistill/core/precision.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "kdistill/losses/objective.h"
#include "kdistill/models/builders.h"
#include "kdistill/models/model.h"
#include "kdistill/teachers/teacher.h"
#include "support.h"

namespace kdistill::test {

using ::testing::HasSubstr;

TEST(Precision, ParsesAndRefusesWithTheReason) {
  EXPECT_EQ(parse_precision("fp32"), Precision::kFloat32);
  EXPECT_EQ(parse_precision("bf16"), Precision::kBFloat16);
  EXPECT_STREQ(to_string(Precision::kBFloat16), "bf16");
  EXPECT_THAT(error_of([] { parse_precision("fp16", "--precision"); }),
              HasSubstr("--precision: fp16 is not supported: it needs dynamic loss scaling"));
  EXPECT_EQ(error_of([] { parse_precision("half", "--precision"); }), "--precision: expected fp32 or bf16, got \"half\"");
}

TEST(Precision, CpuSupportIsWhatProcCpuinfoSays) {
  // Independently: grep's word match on the flags line.
  auto has = [](const char* flag) {
    return run(std::string("grep -m1 '^flags' /proc/cpuinfo | grep -qw ") + flag).status == 0;
  };
  const std::string want = has("amx_bf16") ? "amx_bf16" : has("avx512_bf16") ? "avx512_bf16" : "none";
  EXPECT_EQ(cpu_bf16_support(), want);
}

TEST(Precision, AutocastGuardIsARegionThatNests) {
  auto a = torch::randn({4, 8}), b = torch::randn({8, 3});
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
  {
    AutocastGuard outer(torch::kCPU, Precision::kBFloat16);
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    {
      AutocastGuard inner(torch::kCPU, Precision::kBFloat16);
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    }
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);  // still inside the outer region
    AutocastGuard none(torch::kCPU, Precision::kFloat32);        // fp32 changes nothing
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
}

// The objectives cast bf16 logits to float32 before any softmax: the loss equals a double
// reference computed on the same (bf16-rounded) values, at T = 1 and T = 8, while an all-bf16
// log-softmax does not (so this test could fail).
TEST(Precision, LossesOnBf16LogitsKeepFloat32Precision) {
  torch::manual_seed(3);
  for (double T : {1.0, 8.0}) {
    auto s = (torch::randn({64, 10}) * 6).to(torch::kBFloat16).requires_grad_();
    auto t = (torch::randn({64, 10}) * 6).to(torch::kBFloat16);
    StepContext c;
    c.student_logits = s;
    c.teacher_logits = t;
    c.targets = torch::randint(0, 10, {64}, torch::kLong);
    auto kd = KDObjective(KDLossOptions().temperature(T).alpha(1)).terms(c).at(0).value;
    EXPECT_EQ(kd.scalar_type(), torch::kFloat);
    auto sd = s.detach().to(torch::kDouble), td = t.to(torch::kDouble);
    auto log_pt = torch::log_softmax(td / T, 1), log_ps = torch::log_softmax(sd / T, 1);
    const double want = ((log_pt.exp() * (log_pt - log_ps)).sum(1).mean() * T * T).item<double>();
    EXPECT_NEAR(kd.item<double>(), want, 1e-5 * std::max(1.0, want)) << "T=" << T;
    // All in bf16, the log-probabilities are visibly off (and do not normalise).
    auto lp16 = torch::log_softmax(t / T, 1);
    EXPECT_GT((lp16.to(torch::kDouble) - log_pt).abs().mean().item<double>(), 1e-3) << "T=" << T;
    kd.backward();
    EXPECT_EQ(s.grad().scalar_type(), torch::kBFloat16);  // the gradient reaches the bf16 logits
  }
}

TEST(Precision, Bf16CopyOfAModelAgreesAndLeavesTheOriginalFloat32) {
  torch::manual_seed(4);
  Model m(mlp(8, {64, 64}, 5), "mlp");
  m.eval();
  auto x = torch::randn({512, 8});
  torch::NoGradGuard no_grad;
  auto fp32 = m.forward(x);
  auto fast = m.with_precision(Precision::kBFloat16);
  EXPECT_EQ(fast.precision(), Precision::kBFloat16);
  auto bf16 = fast.forward(x);
  EXPECT_EQ(bf16.scalar_type(), torch::kFloat);
  for (auto& p : m.parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
  for (auto& p : fast.parameters()) EXPECT_EQ(p.scalar_type(), torch::kBFloat16);
  const double agree = (bf16.argmax(1) == fp32.argmax(1)).to(torch::kDouble).mean().item<double>();
  EXPECT_GT(agree, 0.97);
  EXPECT_LT((bf16 - fp32).abs().max().item<double>(), 0.1);
  EXPECT_GT((bf16 - fp32).abs().max().item<double>(), 0.0);  // it did compute in bf16
}

TEST(Precision, Bf16TeacherReturnsFloat32LogitsAndKeepsItsModel) {
  torch::manual_seed(5);
  Model m(mlp(8, {32}, 4), "mlp");
  ModelTeacher teacher(m);
  auto x = torch::randn({256, 8});
  auto idx = torch::arange(256);
  auto fp32 = teacher.logits(x, idx);
  teacher.set_precision(Precision::kBFloat16);
  auto bf16 = teacher.outputs(x, idx, {"1"});
  EXPECT_EQ(bf16.logits.scalar_type(), torch::kFloat);
  EXPECT_EQ(bf16.features.at("1").scalar_type(), torch::kFloat);
  EXPECT_GT((bf16.logits.argmax(1) == fp32.argmax(1)).to(torch::kDouble).mean().item<double>(), 0.97);
  EXPECT_EQ(teacher.model().parameters().front().scalar_type(), torch::kFloat);
  teacher.set_precision(Precision::kFloat32);
  EXPECT_TRUE(teacher.logits(x, idx).equal(fp32));
}

TEST(Precision, AutocastOnCuda_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: the bf16 autocast region on CUDA is not tested here";
  auto a = torch::randn({4, 8}, torch::kCUDA), b = torch::randn({8, 3}, torch::kCUDA);
  {
    AutocastGuard bf16(torch::kCUDA, Precision::kBFloat16);
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    EXPECT_EQ(torch::mm(a.cpu(), b.cpu()).scalar_type(), torch::kFloat);  // only the CUDA region
  }
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
}

}  // namespace kdistill::test
