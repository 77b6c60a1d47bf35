// Tests of kdistill's distillation losses against independent double-precision formulas,
// PyTorch (Python) and finite differences.

#include <torch/torch.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/losses/kd_loss.h"
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

std::vector<double> log_softmax(const std::vector<double>& z, double T) {
  double mx = -std::numeric_limits<double>::infinity();
  for (double v : z) mx = std::max(mx, v / T);
  double sum = 0;
  for (double v : z) sum += std::exp(v / T - mx);
  std::vector<double> out;
  for (double v : z) out.push_back(v / T - mx - std::log(sum));
  return out;
}

// T^2 * (1/B) * sum_i KL(softmax(t_i/T) || softmax(s_i/T)).
double ref_soft(const Mat& s, const Mat& t, double T) {
  double total = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    auto ls = log_softmax(s[i], T), lt = log_softmax(t[i], T);
    for (size_t c = 0; c < ls.size(); ++c) total += std::exp(lt[c]) * (lt[c] - ls[c]);
  }
  return T * T * total / static_cast<double>(s.size());
}

// Mean cross-entropy over targets != ignore; 0 when none.
double ref_ce(const Mat& s, const std::vector<int64_t>& y, int64_t ignore = -1) {
  double total = 0;
  int64_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (y[i] == ignore) continue;
    total -= log_softmax(s[i], 1.0)[static_cast<size_t>(y[i])];
    ++n;
  }
  return n == 0 ? 0.0 : total / static_cast<double>(n);
}

double ref_kd(const Mat& s, const Mat& t, const std::vector<int64_t>& y, double T, double alpha) {
  return alpha * ref_soft(s, t, T) + (1 - alpha) * ref_ce(s, y);
}

double rel_err(double got, double want) { return std::abs(got - want) / std::max(std::abs(want), 1e-300); }

kdistill::KDLossOptions opts(double T, double alpha) { return kdistill::KDLossOptions().temperature(T).alpha(alpha); }

struct Batch {
  torch::Tensor s, t, y;
};

Batch make_batch(int64_t B, int64_t C, uint64_t seed, double scale = 2.0) {
  torch::manual_seed(seed);
  Batch b;
  b.s = torch::randn({B, C}, torch::kDouble) * scale;
  b.t = torch::randn({B, C}, torch::kDouble) * scale;
  b.y = torch::randint(0, C, {B}, torch::kLong);
  return b;
}

// Runs `f`, expecting kdistill::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  const std::string msg = kdistill::test::error_of(f);
  for (const auto& p : parts) EXPECT_THAT(msg, ::testing::HasSubstr(p));
}

std::string py_list(const Mat& m) {
  std::ostringstream o;
  o.precision(17);
  o << "[";
  for (const auto& row : m) {
    o << "[";
    for (double v : row) o << v << ",";
    o << "],";
  }
  o << "]";
  return o.str();
}

}  // namespace

TEST(KdLoss, MatchesDoubleFormulaForSeveralTemperaturesAndAlphas) {
  auto b = make_batch(7, 5, 11);
  const auto s = to_mat(b.s), t = to_mat(b.t);
  const auto y = to_vec(b.y);
  for (double T : {0.5, 1.0, 4.0, 20.0}) {
    for (double alpha : {0.0, 0.3, 0.9, 1.0}) {
      double got = kdistill::kd_loss(b.s, b.t, b.y, opts(T, alpha)).item<double>();
      EXPECT_LE(rel_err(got, ref_kd(s, t, y, T, alpha)), 1e-6) << "T=" << T << " alpha=" << alpha;
    }
  }
  // Documented defaults: T = 4, alpha = 0.9.
  EXPECT_LE(rel_err(kdistill::kd_loss(b.s, b.t, b.y).item<double>(), ref_kd(s, t, y, 4.0, 0.9)), 1e-6);
}

TEST(KdLoss, MatchesPytorchPython) {
  KDISTILL_REQUIRE_PYTHON_TORCH();
  auto b = make_batch(6, 4, 5);
  const std::vector<std::pair<double, double>> cases = {{1.0, 0.5}, {4.0, 0.9}, {2.5, 0.0}, {10.0, 1.0}};
  auto y_partial = b.y.clone();
  y_partial[1] = -1;
  y_partial[4] = -1;
  std::ostringstream code;
  code << "import torch\nimport torch.nn.functional as F\n"
       << "s = torch.tensor(" << py_list(to_mat(b.s)) << ", dtype=torch.float64)\n"
       << "t = torch.tensor(" << py_list(to_mat(b.t)) << ", dtype=torch.float64)\n"
       << "for y in (torch.tensor([";
  for (auto v : to_vec(b.y)) code << v << ",";
  code << "]), torch.tensor([";
  for (auto v : to_vec(y_partial)) code << v << ",";
  code << "])):\n  for T, a in [";
  for (auto [T, a] : cases) code << "(" << T << "," << a << "),";
  code << "]:\n"
       << "    v = T*T*F.kl_div(F.log_softmax(s/T,1), F.softmax(t/T,1), reduction='batchmean')*a"
       << " + (1-a)*F.cross_entropy(s, y, ignore_index=-1)\n"
       << "    print(repr(v.item()))\n";
  auto out = kdistill::test::python(code.str());
  ASSERT_EQ(out.status, 0) << out.err;
  std::istringstream lines(out.out);
  for (const auto& y : {b.y, y_partial}) {
    for (auto [T, a] : cases) {
      std::string line;
      ASSERT_TRUE(static_cast<bool>(std::getline(lines, line))) << "python printed too few lines: " << out.out;
      double want = std::stod(line);
      double got = kdistill::kd_loss(b.s, b.t, y, opts(T, a)).item<double>();
      EXPECT_LE(rel_err(got, want), 1e-6) << "T=" << T << " alpha=" << a << " python=" << line;
    }
  }
}

TEST(KdLoss, GradientMatchesCentralDifferencesAndTeacherGetsNone) {
  auto b = make_batch(4, 5, 21);
  const double T = 3.0, alpha = 0.6, eps = 1e-6;
  auto s = b.s.clone().requires_grad_(true);
  auto t = b.t.clone().requires_grad_(true);
  kdistill::kd_loss(s, t, b.y, opts(T, alpha)).backward();
  ASSERT_TRUE(s.grad().defined());
  EXPECT_FALSE(t.grad().defined()) << "kd_loss must detach the teacher logits";
  const auto y = to_vec(b.y);
  const auto tm = to_mat(b.t);
  const auto grad = s.grad();
  auto g = grad.accessor<double, 2>();
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t j = 0; j < 5; ++j) {
      auto plus = to_mat(b.s), minus = to_mat(b.s);
      plus[i][j] += eps;
      minus[i][j] -= eps;
      double fd = (ref_kd(plus, tm, y, T, alpha) - ref_kd(minus, tm, y, T, alpha)) / (2 * eps);
      EXPECT_NEAR(g[i][j], fd, 1e-6) << "(" << i << "," << j << ")";
    }
  }
  // The other losses leave the teacher alone too.
  for (int k = 0; k < 3; ++k) {
    auto s2 = b.s.clone().requires_grad_(true);
    auto t2 = b.t.clone().requires_grad_(true);
    auto l = k == 0 ? kdistill::kd_soft_loss(s2, t2, 2.0)
                    : k == 1 ? kdistill::soft_target_cross_entropy(s2, t2, 2.0) : kdistill::logit_mse(s2, t2);
    l.backward();
    EXPECT_TRUE(s2.grad().defined()) << k;
    EXPECT_FALSE(t2.grad().defined()) << k;
  }
}

TEST(KdLoss, TemperatureSquaredKeepsSoftGradientMagnitude) {
  auto b = make_batch(8, 10, 0);
  std::vector<double> norms;
  for (double T : {1.0, 4.0, 20.0}) {
    auto s = b.s.clone().requires_grad_(true);
    kdistill::kd_loss(s, b.t, b.y, opts(T, 1.0)).backward();
    norms.push_back(s.grad().norm().item<double>());
    EXPECT_GT(norms.back(), 0.0);
  }
  // Without the T^2 factor the T = 20 gradient would be ~400x smaller than the T = 1 one.
  EXPECT_GT(norms[2] / norms[0], 0.1);
  EXPECT_LT(norms[2] / norms[0], 10.0);
  EXPECT_GT(norms[1] / norms[0], 1.0 / 3);
  EXPECT_LT(norms[1] / norms[0], 3.0);
}

TEST(KdLoss, TransferSetSamplesGetSoftTermOnly) {
  auto b = make_batch(6, 5, 8);
  auto y = torch::tensor({2, -1, 0, -1, 4, -1}, torch::kLong);
  const auto s = to_mat(b.s), t = to_mat(b.t);
  const auto yv = to_vec(y);
  // Hard term averaged over the 3 labelled samples, not over 6.
  double got = kdistill::kd_loss(b.s, b.t, y, opts(2.0, 0.4)).item<double>();
  EXPECT_LE(rel_err(got, ref_kd(s, t, yv, 2.0, 0.4)), 1e-6);
  EXPECT_LE(rel_err(kdistill::masked_cross_entropy(b.s, y).item<double>(), ref_ce(s, yv)), 1e-6);

  // A custom ignore_index.
  auto y100 = torch::tensor({2, -100, 0, -100, 4, -100}, torch::kLong);
  double got100 = kdistill::kd_loss(b.s, b.t, y100, opts(2.0, 0.4).ignore_index(-100)).item<double>();
  EXPECT_LE(rel_err(got100, ref_kd(s, t, yv, 2.0, 0.4)), 1e-6);

  // No labels at all: the hard term is exactly 0, with finite gradients.
  auto none = torch::full({6}, -1, torch::kLong);
  auto sg = b.s.clone().requires_grad_(true);
  auto hard = kdistill::kd_loss(sg, b.t, none, opts(2.0, 0.0));
  EXPECT_EQ(hard.item<double>(), 0.0);
  hard.backward();
  ASSERT_TRUE(sg.grad().defined());
  EXPECT_TRUE(torch::isfinite(sg.grad()).all().item<bool>());
  EXPECT_EQ(kdistill::masked_cross_entropy(b.s, none).item<double>(), 0.0);
  double half = kdistill::kd_loss(b.s, b.t, none, opts(2.0, 0.5)).item<double>();
  EXPECT_LE(rel_err(half, 0.5 * ref_soft(s, t, 2.0)), 1e-6);
}

TEST(KdLoss, Float32AndBfloat16Inputs) {
  auto b = make_batch(6, 7, 3);
  const double want = ref_kd(to_mat(b.s), to_mat(b.t), to_vec(b.y), 4.0, 0.7);
  auto f32 = kdistill::kd_loss(b.s.to(torch::kFloat), b.t.to(torch::kFloat), b.y, opts(4.0, 0.7));
  EXPECT_EQ(f32.scalar_type(), torch::kFloat);
  EXPECT_LE(rel_err(f32.item<double>(), want), 1e-5);

  auto sb = b.s.to(torch::kBFloat16).requires_grad_(true);
  auto bf = kdistill::kd_loss(sb, b.t.to(torch::kBFloat16), b.y.to(torch::kInt), opts(4.0, 0.7));
  EXPECT_LE(rel_err(bf.item<double>(), want), 2e-2);
  bf.backward();
  ASSERT_TRUE(sb.grad().defined());
  EXPECT_EQ(sb.grad().scalar_type(), torch::kBFloat16);
  auto sd = b.s.clone().requires_grad_(true);
  kdistill::kd_loss(sd, b.t, b.y, opts(4.0, 0.7)).backward();
  EXPECT_LT((sb.grad().to(torch::kDouble) - sd.grad()).abs().max().item<double>(), 5e-3);
}

TEST(KdLoss, InvalidInputsThrowNamingArgumentAndValue) {
  auto b = make_batch(4, 5, 1);
  const auto& s = b.s;
  const auto& t = b.t;
  const auto& y = b.y;
  EXPECT_THROW(kdistill::kd_loss(s[0], t, y), kdistill::Error);
  expect_error([&] { kdistill::kd_loss(s[0], t[0], y); }, {"student_logits", "2-D", "[5]"});
  expect_error([&] { kdistill::kd_loss(s, t[0], y); }, {"teacher_logits", "2-D"});
  EXPECT_THROW(kdistill::kd_loss(s, torch::randn({4, 6}, torch::kDouble), y), kdistill::Error);
  expect_error([&] { kdistill::kd_loss(s, torch::randn({4, 6}, torch::kDouble), y); },
               {"same shape", "[4, 5]", "[4, 6]"});
  expect_error([&] { kdistill::kd_loss(s, t, y.unsqueeze(1)); }, {"targets", "1-D", "[4, 1]"});
  expect_error([&] { kdistill::kd_loss(s, t, y.to(torch::kFloat)); }, {"targets", "integer", "Float"});
  expect_error([&] { kdistill::kd_loss(s, t, y.slice(0, 0, 3)); }, {"targets", "3", "batch size 4"});
  EXPECT_THROW(kdistill::kd_loss(s, t, torch::tensor({0, 7, 1, 2}, torch::kLong)), kdistill::Error);
  expect_error([&] { kdistill::kd_loss(s, t, torch::tensor({0, 7, 1, 2}, torch::kLong)); },
               {"targets[1]", "= 7"});
  expect_error([&] { kdistill::kd_loss(s, t, torch::tensor({0, 1, -2, 2}, torch::kLong)); },
               {"targets[2]", "= -2"});
  EXPECT_THROW(kdistill::kd_loss(s, t, y, opts(-1.0, 0.5)), kdistill::Error);
  expect_error([&] { kdistill::kd_loss(s, t, y, opts(-1.0, 0.5)); }, {"temperature", "-1"});
  expect_error([&] { kdistill::kd_loss(s, t, y, opts(0.0, 0.5)); }, {"temperature", "0"});
  expect_error([&] { kdistill::kd_soft_loss(s, t, -1.0); }, {"temperature", "-1"});
  expect_error([&] { kdistill::soft_target_cross_entropy(s, t, 0.0); }, {"temperature"});
  EXPECT_THROW(kdistill::kd_loss(s, t, y, opts(4.0, 1.5)), kdistill::Error);
  expect_error([&] { kdistill::kd_loss(s, t, y, opts(4.0, 1.5)); }, {"alpha", "1.5"});
  expect_error([&] { kdistill::kd_loss(s, t, y, opts(4.0, -0.1)); }, {"alpha"});
  auto s_nan = s.clone();
  s_nan[2][3] = std::numeric_limits<double>::quiet_NaN();
  expect_error([&] { kdistill::kd_loss(s_nan, t, y); }, {"student_logits", "row 2"});
  auto t_inf = t.clone();
  t_inf[3][0] = std::numeric_limits<double>::infinity();
  expect_error([&] { kdistill::kd_loss(s, t_inf, y); }, {"teacher_logits", "row 3"});
  expect_error([&] { kdistill::logit_mse(s, t_inf); }, {"teacher_logits", "row 3"});
  expect_error([&] { kdistill::masked_cross_entropy(s, torch::tensor({0, 1, 5, 2}, torch::kLong)); },
               {"targets[2]", "= 5"});
}

TEST(KdLoss, CompanionLossesMatchFormulas) {
  auto b = make_batch(5, 6, 17);
  const auto s = to_mat(b.s), t = to_mat(b.t);
  const auto y = to_vec(b.y);
  for (double T : {1.0, 3.0}) {
    // Mean teacher entropy at temperature T.
    double entropy = 0;
    for (const auto& row : t) {
      for (double lp : log_softmax(row, T)) entropy -= std::exp(lp) * lp;
    }
    entropy /= static_cast<double>(t.size());
    double ce = kdistill::soft_target_cross_entropy(b.s, b.t, T).item<double>();
    double kl = kdistill::kd_soft_loss(b.s, b.t, T).item<double>();
    EXPECT_LE(rel_err(kl, ref_soft(s, t, T)), 1e-6) << T;
    EXPECT_LE(rel_err(ce, ref_soft(s, t, T) + T * T * entropy), 1e-6) << T;
    EXPECT_LE(rel_err(ce, kl + T * T * entropy), 1e-6) << T;
  }
  double mse = 0;
  for (size_t i = 0; i < s.size(); ++i)
    for (size_t c = 0; c < s[i].size(); ++c) mse += (s[i][c] - t[i][c]) * (s[i][c] - t[i][c]);
  mse /= static_cast<double>(s.size() * s[0].size());
  EXPECT_LE(rel_err(kdistill::logit_mse(b.s, b.t).item<double>(), mse), 1e-9);
  EXPECT_LE(rel_err(kdistill::masked_cross_entropy(b.s, b.y).item<double>(), ref_ce(s, y)), 1e-6);

  kdistill::KDLoss criterion(opts(2.0, 0.7));
  EXPECT_EQ(criterion->options.temperature(), 2.0);
  double module_value = criterion(b.s, b.t, b.y).item<double>();
  EXPECT_DOUBLE_EQ(module_value, kdistill::kd_loss(b.s, b.t, b.y, opts(2.0, 0.7)).item<double>());
  EXPECT_LE(rel_err(module_value, ref_kd(s, t, y, 2.0, 0.7)), 1e-6);
}
