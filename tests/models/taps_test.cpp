// Feature taps: each tapped output must be the very tensor that running that prefix of the model by
// hand gives (bitwise), gradients must flow through it, and unknown names must list what exists.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <torch/script.h>
#include <torch/torch.h>

#include "fixtures/fixtures.h"
#include "kdistill/core/error.h"
#include "kdistill/models/builders.h"
#include "kdistill/models/model.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

// A residual block whose forward calls its members directly (no Sequential).
struct BlockImpl : torch::nn::Module {
  BlockImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 4, 3).padding(1)));
    bn = register_module("bn", torch::nn::BatchNorm2d(4));
  }
  torch::Tensor forward(const torch::Tensor& x) { return torch::relu(bn(conv(x)) + x); }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
};
TORCH_MODULE(Block);

// A nested C++ model: a Sequential stem, a custom block, a head.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    stem = register_module("stem", torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)),
                                                         torch::nn::BatchNorm2d(4), torch::nn::ReLU()));
    block = register_module("block", Block());
    head = register_module("head", torch::nn::Linear(4, 3));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = block(stem->forward(x));
    return head(torch::adaptive_avg_pool2d(y, {1, 1}).flatten(1));
  }
  torch::nn::Sequential stem{nullptr};
  Block block{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(Net);

}  // namespace

TEST(Taps, SequentialChildrenAreTheOutputsOfThePrefix) {
  torch::manual_seed(0);
  auto seq = mlp(8, {16, 12}, 3);  // Flatten, Linear, ReLU, Linear, ReLU, Linear
  Model m(seq, "mlp");
  auto x = torch::randn({5, 8});
  auto out = m.forward_with_features(x, {"2", "3"});
  auto h1 = seq[1]->as<torch::nn::Linear>()->forward(x.flatten(1));
  auto h2 = torch::relu(h1);
  auto h3 = seq[3]->as<torch::nn::Linear>()->forward(h2);
  EXPECT_TRUE(out.features.at("2").equal(h2));
  EXPECT_TRUE(out.features.at("3").equal(h3));
  EXPECT_TRUE(out.logits.equal(m.forward(x)));
  // The Sequential is left as it was: a plain forward after the tap still works, and taps again.
  EXPECT_TRUE(m.forward_with_features(x, {"3"}).features.at("3").equal(h3));
  // Gradients reach the parameters before the tap through a loss on the tap alone.
  out.features.at("3").sum().backward();
  EXPECT_TRUE(seq[1]->as<torch::nn::Linear>()->weight.grad().defined());
  EXPECT_GT(seq[1]->as<torch::nn::Linear>()->weight.grad().abs().sum().item<double>(), 0);
}

TEST(Taps, NestedCppModuleBySequentialPathAndByParameters) {
  torch::manual_seed(1);
  Net net;
  Model m(net, "net");
  m.train();
  auto x = torch::randn({2, 1, 6, 6});
  auto out = m.forward_with_features(x, {"stem.1", "stem", "block.conv", "block.bn", "head"});
  // The same prefix by hand, in training mode, on a copy of the state (BatchNorm's running
  // statistics moved during the tapped pass: compare against the same starting point).
  torch::manual_seed(1);
  Net again;
  auto s0 = again->stem[0]->as<torch::nn::Conv2d>()->forward(x);
  auto s1 = again->stem[1]->as<torch::nn::BatchNorm2d>()->forward(s0);
  auto stem = torch::relu(s1);
  auto conv = again->block->conv(stem);
  auto bn = again->block->bn(conv);
  auto block = torch::relu(bn + stem);
  auto head = again->head(torch::adaptive_avg_pool2d(block, {1, 1}).flatten(1));
  EXPECT_TRUE(out.features.at("stem.1").equal(s1));
  EXPECT_TRUE(out.features.at("stem").equal(stem));  // a Sequential: its last child's output
  EXPECT_TRUE(out.features.at("block.conv").equal(conv));
  EXPECT_TRUE(out.features.at("block.bn").equal(bn));
  EXPECT_TRUE(out.features.at("head").equal(head));
  EXPECT_TRUE(out.logits.equal(head));
  out.features.at("block.conv").pow(2).sum().backward();
  EXPECT_GT(net->stem[0]->as<torch::nn::Conv2d>()->weight.grad().abs().sum().item<double>(), 0);

  const auto names = m.feature_names();
  EXPECT_THAT(names, ::testing::Contains("block.conv"));
  EXPECT_THAT(names, ::testing::Contains("stem.2"));  // a parameterless Sequential child
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("block")));  // custom, not in a Sequential
}

TEST(Taps, UnknownAndUntappableNamesListWhatExists) {
  Net net;
  Model m(net, "net");
  auto x = torch::randn({1, 1, 6, 6});
  auto msg = error_of([&] { m.forward_with_features(x, {"stem.9"}); });
  EXPECT_THAT(msg, HasSubstr("'stem.9' is not a submodule"));
  EXPECT_THAT(msg, HasSubstr("block.conv"));
  EXPECT_THAT(error_of([&] { m.forward_with_features(x, {"block"}); }),
              HasSubstr("'block' is neither a child of a Sequential, a Sequential, nor a submodule with parameters"));
  EXPECT_THAT(error_of([&] { m.forward_with_features(x, {"head", "head"}); }), HasSubstr("asked for twice"));
}

TEST(Taps, NoNamesIsThePlainForward) {
  torch::manual_seed(2);
  Model m(mlp(8, {16}, 3), "mlp");
  auto x = torch::randn({4, 8});
  auto out = m.forward_with_features(x, {});
  EXPECT_TRUE(out.features.empty());
  EXPECT_TRUE(out.logits.equal(m.forward(x)));
}

TEST(Taps, TorchScriptSubmodulesAreTheOutputsOfThePrefix) {
  KDISTILL_REQUIRE_FIXTURES();
  for (bool training : {false, true}) {
    auto m = Model::load_torchscript(fixtures() + "/taps.pt");
    auto ref = Model::load_torchscript(fixtures() + "/taps.pt");  // same weights, run by hand
    m.train(training);
    ref.train(training);
    torch::manual_seed(4);
    auto x = torch::randn({3, 1, 6, 6});
    auto out = m.forward_with_features(x, {"stem.1", "block.conv", "block", "head"});
    auto sub = [&](const std::string& path) {
      torch::jit::Module mod = *ref.script();
      size_t start = 0;
      while (true) {
        auto dot = path.find('.', start);
        mod = mod.attr(path.substr(start, dot - start)).toModule();
        if (dot == std::string::npos) break;
        start = dot + 1;
      }
      return mod;
    };
    auto run = [&](const std::string& path, const torch::Tensor& in) { return sub(path).forward({in}).toTensor(); };
    auto s0 = run("stem.0", x);
    auto s1 = run("stem.1", s0);  // the BatchNorm's output, before the in-place ReLU changes it
    auto stem = torch::relu(s1);
    auto conv = run("block.conv", stem);
    auto block = run("block", stem);
    auto head = run("head", torch::adaptive_avg_pool2d(block, {1, 1}).flatten(1));
    EXPECT_TRUE(out.features.at("stem.1").equal(s1)) << "training " << training;
    EXPECT_TRUE(out.features.at("block.conv").equal(conv)) << "training " << training;
    EXPECT_TRUE(out.features.at("block").equal(block)) << "training " << training;
    EXPECT_TRUE(out.features.at("head").equal(head)) << "training " << training;
    EXPECT_TRUE(out.logits.equal(head)) << "training " << training;
    if (training) {
      out.features.at("block.conv").sum().backward();
      for (auto& [name, p] : m.named_parameters()) {
        if (name.rfind("stem.0.", 0) == 0 || name.rfind("block.conv.", 0) == 0) {
          EXPECT_TRUE(p.grad().defined()) << name;
        }
      }
    }
  }
}

TEST(Taps, TorchScriptUnknownNamesListWhatExists) {
  KDISTILL_REQUIRE_FIXTURES();
  auto m = Model::load_torchscript(fixtures() + "/taps.pt");
  auto msg = error_of([&] { m.forward_with_features(torch::randn({1, 1, 6, 6}), {"block.conv9"}); });
  EXPECT_THAT(msg, HasSubstr("'block.conv9' is not a submodule"));
  EXPECT_THAT(msg, HasSubstr("block.conv, block.bn"));
}

}  // namespace kdistill::test
