// Attention transfer against element-by-element double-precision computations.
#include "kdistill/losses/attention.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

// mean_c f^2 at each position of sample b, then divided by its L2 norm; `pool` averages k x k blocks first.
std::vector<double> map_ref(const torch::Tensor& f0, int64_t b, int64_t pool = 1) {
  auto f = f0.detach().to(torch::kDouble);
  const int64_t C = f.size(1), H = f.size(2) / pool, W = f.size(3) / pool;
  std::vector<double> a(H * W, 0.0);
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t w = 0; w < W; ++w) {
        double v = 0;
        for (int64_t i = 0; i < pool; ++i) {
          for (int64_t j = 0; j < pool; ++j) v += f[b][c][h * pool + i][w * pool + j].item<double>();
        }
        v /= static_cast<double>(pool * pool);
        a[h * W + w] += v * v / static_cast<double>(C);
      }
    }
  }
  double n = 0;
  for (double v : a) n += v * v;
  for (auto& v : a) v /= std::sqrt(n);
  return a;
}

double at_ref(const torch::Tensor& fs, const torch::Tensor& ft, int64_t b, int64_t pool_s = 1) {
  auto s = map_ref(fs, b, pool_s), t = map_ref(ft, b);
  double d = 0;
  for (size_t i = 0; i < s.size(); ++i) d += (s[i] - t[i]) * (s[i] - t[i]);
  return d / static_cast<double>(s.size());
}

}  // namespace

TEST(AttentionTransfer, MapAndLossMatchTheFormula) {
  torch::manual_seed(12);
  auto fs = torch::randn({2, 3, 4, 4}, torch::kDouble), ft = torch::randn({2, 5, 4, 4}, torch::kDouble);
  auto a = attention_map(fs);
  ASSERT_EQ(a.sizes(), torch::IntArrayRef({2, 16}));
  auto ref = map_ref(fs, 1);
  for (int64_t j = 0; j < 16; ++j) EXPECT_NEAR(a[1][j].item<double>(), ref[j], 1e-12);
  auto l = attention_transfer(fs, ft);
  ASSERT_EQ(l.sizes(), torch::IntArrayRef({2}));
  for (int64_t b = 0; b < 2; ++b) EXPECT_NEAR(l[b].item<double>(), at_ref(fs, ft, b), 1e-12);
  // A larger student map is average-pooled to the teacher's size.
  auto big = torch::randn({2, 3, 8, 8}, torch::kDouble);
  auto pooled = attention_transfer(big, ft);
  for (int64_t b = 0; b < 2; ++b) EXPECT_NEAR(pooled[b].item<double>(), at_ref(big, ft, b, 2), 1e-12);
}

TEST(AttentionTransfer, GradientMatchesCentralDifferencesAndTeacherGetsNone) {
  torch::manual_seed(13);
  auto fs0 = torch::randn({1, 2, 2, 3}, torch::kDouble), ft = torch::randn({1, 4, 2, 3}, torch::kDouble);
  auto fs = fs0.clone().requires_grad_(true);
  auto ftg = ft.clone().requires_grad_(true);
  attention_transfer(fs, ftg).sum().backward();
  EXPECT_FALSE(ftg.grad().defined());
  const double eps = 1e-6;
  auto flat = fs0.reshape({-1});
  for (int64_t k = 0; k < flat.size(0); ++k) {
    auto plus = fs0.clone(), minus = fs0.clone();
    plus.reshape({-1})[k] += eps;
    minus.reshape({-1})[k] -= eps;
    const double fd = (at_ref(plus, ft, 0) - at_ref(minus, ft, 0)) / (2 * eps);
    EXPECT_NEAR(fs.grad().reshape({-1})[k].item<double>(), fd, 1e-7) << k;
  }
}

TEST(AttentionTransfer, BadInputsThrow) {
  auto msg = [](const torch::Tensor& a, const torch::Tensor& b, double p) {
    return error_of([&] { attention_transfer(a, b, p); });
  };
  EXPECT_THAT(msg(torch::randn({2, 3}), torch::randn({2, 3, 4, 4}), 2), HasSubstr("features must be [B, C, H, W]"));
  EXPECT_THAT(msg(torch::randn({2, 3, 4, 4}), torch::randn({3, 3, 4, 4}), 2), HasSubstr("batch sizes differ, 2 and 3"));
  EXPECT_THAT(msg(torch::randn({2, 3, 4, 4}), torch::randn({2, 3, 4, 4}), 0), HasSubstr("p must be >= 1, got 0"));
  EXPECT_THAT(msg(torch::randn({2, 3, 4, 4}), torch::randn({2, 3, 4, 4}), 0.5), HasSubstr("p must be >= 1, got 0.5"));
}

}  // namespace kdistill::test
