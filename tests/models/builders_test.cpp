// Tests for kdistill/models/builders.h: architectures, parameter counts and model specs.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/models/builders.h"
#include "support.h"

namespace {

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// Linear layers in -> h1 -> ... -> out: weights plus biases.
int64_t mlp_formula(int64_t in, const std::vector<int64_t>& hidden, int64_t out) {
  int64_t n = 0, width = in;
  for (auto h : hidden) {
    n += width * h + h;
    width = h;
  }
  return n + width * out + out;
}

// Conv 3x3 (+ bias) and BatchNorm (weight + bias) per width, pooling halves H and W; then the linears.
int64_t cnn_formula(int64_t c, int64_t h, int64_t w, const std::vector<int64_t>& widths, int64_t out, int64_t fc) {
  int64_t n = 0;
  for (auto k : widths) {
    n += c * k * 9 + k + 2 * k;
    c = k;
    h /= 2;
    w /= 2;
  }
  int64_t width = c * h * w;
  if (fc > 0) {
    n += width * fc + fc;
    width = fc;
  }
  return n + width * out + out;
}

TEST(Builders, MlpParameterCounts) {
  EXPECT_EQ(mlp_formula(784, {64}, 10), 50890);
  EXPECT_EQ(count_parameters(*kdistill::mlp(784, {64}, 10)), 50890);
  EXPECT_EQ(mlp_formula(784, {1200, 1200}, 10), 2395210);
  EXPECT_EQ(count_parameters(*kdistill::mlp(784, {1200, 1200}, 10, 0.2)), 2395210);
  EXPECT_EQ(count_parameters(*kdistill::mlp(20, {}, 3)), mlp_formula(20, {}, 3));
}

TEST(Builders, CnnParameterCounts) {
  EXPECT_EQ(cnn_formula(1, 28, 28, {8, 16}, 10, 0), 9146);
  EXPECT_EQ(count_parameters(*kdistill::cnn({1, 28, 28}, {8, 16}, 10)), 9146);
  EXPECT_EQ(cnn_formula(1, 28, 28, {32, 64}, 10, 256), 824650);
  EXPECT_EQ(count_parameters(*kdistill::cnn({1, 28, 28}, {32, 64}, 10, 256, 0.2)), 824650);
  EXPECT_EQ(count_parameters(*kdistill::cnn({3, 32, 32}, {4}, 5)), cnn_formula(3, 32, 32, {4}, 5, 0));
}

TEST(Builders, OutputShapes) {
  const auto x = torch::randn({4, 1, 28, 28});
  auto m = kdistill::mlp(784, {64}, 10);
  EXPECT_EQ(m->forward(x).sizes().vec(), (std::vector<int64_t>{4, 10}));
  auto c = kdistill::cnn({1, 28, 28}, {8, 16}, 10);
  c->eval();
  EXPECT_EQ(c->forward(x).sizes().vec(), (std::vector<int64_t>{4, 10}));
  auto odd = kdistill::cnn({2, 9, 7}, {3}, 6);  // 9x7 pools to 4x3
  odd->eval();
  EXPECT_EQ(odd->forward(torch::randn({2, 2, 9, 7})).sizes().vec(), (std::vector<int64_t>{2, 6}));
}

TEST(Builders, MlpIsAffineWithoutHiddenLayers) {
  // With no hidden layer the MLP is Flatten + one Linear: check against the formula x W^T + b.
  auto m = kdistill::mlp(6, {}, 2);
  auto params = m->named_parameters();
  const auto x = torch::randn({3, 2, 3});
  const auto expected = torch::matmul(x.flatten(1), params["1.weight"].t()) + params["1.bias"];
  EXPECT_TRUE(torch::allclose(m->forward(x), expected, 1e-5, 1e-6));
}

TEST(Builders, RejectsBadArguments) {
  EXPECT_THROW(kdistill::mlp(0, {4}, 2), kdistill::Error);
  EXPECT_THROW(kdistill::mlp(4, {0}, 2), kdistill::Error);
  EXPECT_THROW(kdistill::mlp(4, {4}, 2, 1.0), kdistill::Error);
  EXPECT_THROW(kdistill::cnn({28, 28}, {8}, 10), kdistill::Error);
  EXPECT_THROW(kdistill::cnn({1, 28, 28}, {}, 10), kdistill::Error);
  EXPECT_THROW(kdistill::cnn({1, 2, 2}, {4, 4}, 10), kdistill::Error);  // too small for two poolings
}

TEST(BuildModel, Specs) {
  const std::vector<int64_t> shape = {1, 28, 28};
  const auto x = torch::randn({3, 1, 28, 28});
  auto m = kdistill::build_model("mlp:64", shape, 10);
  EXPECT_EQ(m.arch(), "mlp:64");
  EXPECT_EQ(m.num_parameters(), 50890);
  EXPECT_EQ(m.forward(x).sizes().vec(), (std::vector<int64_t>{3, 10}));

  auto two = kdistill::build_model("mlp:1200,1200", shape, 10);
  EXPECT_EQ(two.num_parameters(), 2395210);

  auto c = kdistill::build_model("cnn:8,16", shape, 10);
  EXPECT_EQ(c.num_parameters(), 9146);
  c.eval();
  EXPECT_EQ(c.forward(x).sizes().vec(), (std::vector<int64_t>{3, 10}));

  auto teacher = kdistill::build_model("cnn", shape, 10);
  EXPECT_EQ(teacher.num_parameters(), 824650);
  EXPECT_EQ(teacher.arch(), "cnn");
  teacher.eval();
  EXPECT_EQ(teacher.forward(x).sizes().vec(), (std::vector<int64_t>{3, 10}));
}

TEST(BuildModel, BadSpecsThrowQuotingTheSpec) {
  for (const std::string spec : {"mlp:abc", "rnn:3", "mlp:0", "cnn:", "mlp", "mlp:64,,32", "cnn:8,-16", ""}) {
    EXPECT_THAT(kdistill::test::error_of([&] { kdistill::build_model(spec, {1, 28, 28}, 10); }),
                ::testing::HasSubstr("\"" + spec + "\""));
  }
  EXPECT_THROW(kdistill::build_model("mlp:64", {1, 28, 28}, 0), kdistill::Error);
}

}  // namespace
