// Tests for kdistill/models/model.h: C++ and TorchScript models, saving and loading.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/models/builders.h"
#include "kdistill/models/model.h"
#include "support.h"

namespace {

using kdistill::Model;
using kdistill::test::TempDir;
using kdistill::test::error_of;
using ::testing::HasSubstr;

TEST(Model, WrapsCxxModule) {
  torch::manual_seed(0);
  auto seq = kdistill::mlp(4, {5}, 3);
  Model m(seq, "mlp:5");
  EXPECT_TRUE(m.defined());
  EXPECT_FALSE(m.is_torchscript());
  EXPECT_EQ(m.arch(), "mlp:5");
  EXPECT_EQ(m.module().get(), static_cast<torch::nn::Module*>(seq.ptr().get()));
  const auto x = torch::randn({2, 4});
  EXPECT_TRUE(torch::equal(m.forward(x), seq->forward(x)));
  EXPECT_TRUE(torch::equal(m(x), seq->forward(x)));

  const auto named = m.named_parameters();
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& [name, t] : named) {
    names.push_back(name);
    shapes.push_back(t.sizes().vec());
  }
  // Index 0 is the Flatten, 2 the ReLU.
  EXPECT_EQ(names, (std::vector<std::string>{"1.weight", "1.bias", "3.weight", "3.bias"}));
  EXPECT_EQ(shapes, (std::vector<std::vector<int64_t>>{{5, 4}, {5}, {3, 5}, {3}}));
  const auto params = m.parameters();
  ASSERT_EQ(params.size(), named.size());
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(params[i].is_same(named[i].second)) << i;
  EXPECT_EQ(m.num_parameters(), 4 * 5 + 5 + 5 * 3 + 3);
  EXPECT_TRUE(m.device().is_cpu());

  Model copy = m;  // copies share the module
  copy.eval();
  EXPECT_FALSE(m.is_training());
}

TEST(Model, ExplicitForwardAndInvalidConstruction) {
  auto lin = torch::nn::Linear(4, 3);
  Model m(lin.ptr(), [p = lin.ptr()](const torch::Tensor& x) { return p->forward(x) * 2; }, "double");
  const auto x = torch::randn({3, 4});
  EXPECT_TRUE(torch::allclose(m.forward(x), lin->forward(x) * 2));
  EXPECT_EQ(m.num_parameters(), 4 * 3 + 3);
  auto fn = [](const torch::Tensor& in) { return in; };
  EXPECT_THROW((void)Model(std::shared_ptr<torch::nn::Module>(), fn), kdistill::Error);
  EXPECT_THROW((void)Model(lin.ptr(), std::function<torch::Tensor(const torch::Tensor&)>()), kdistill::Error);

  Model empty;
  EXPECT_FALSE(empty.defined());
  EXPECT_EQ(empty.num_parameters(), 0);
  EXPECT_THROW(empty.forward(x), kdistill::Error);
  TempDir dir;
  EXPECT_THROW(empty.save(dir / "e.pt"), kdistill::Error);
}

TEST(Model, TrainEvalToggles) {
  Model m(kdistill::mlp(4, {16}, 3, 0.5));
  m.train();
  EXPECT_TRUE(m.is_training());
  for (const auto& child : m.module()->children()) EXPECT_TRUE(child->is_training());
  m.eval();
  EXPECT_FALSE(m.is_training());
  for (const auto& child : m.module()->children()) EXPECT_FALSE(child->is_training());
  const auto x = torch::randn({8, 4});
  EXPECT_TRUE(torch::equal(m.forward(x), m.forward(x)));  // dropout is off in eval mode
  m.train(true);
  EXPECT_TRUE(m.is_training());
}

TEST(Model, SaveThenLoadWeightsGivesIdenticalOutputs) {
  TempDir dir;
  torch::manual_seed(1);
  Model a(kdistill::mlp(4, {5}, 3)), b(kdistill::mlp(4, {5}, 3));
  const auto x = torch::randn({6, 4});
  ASSERT_FALSE(torch::equal(a.forward(x), b.forward(x)));
  a.save(dir / "a.pt");
  b.load_weights(dir / "a.pt");
  EXPECT_TRUE(torch::equal(a.forward(x), b.forward(x)));
}

TEST(Model, SaveThenLoadWeightsRestoresBuffers) {
  TempDir dir;
  torch::manual_seed(2);
  Model a(kdistill::cnn({1, 8, 8}, {4}, 3)), b(kdistill::cnn({1, 8, 8}, {4}, 3));
  a.train();
  for (int i = 0; i < 3; ++i) a.forward(torch::randn({5, 1, 8, 8}) * 3 + 1);  // moves BatchNorm statistics
  a.eval();
  a.save(dir / "cnn.pt");
  b.load_weights(dir / "cnn.pt");
  b.eval();
  const auto x = torch::randn({4, 1, 8, 8});
  EXPECT_TRUE(torch::equal(a.forward(x), b.forward(x)));
  const auto ba = a.named_buffers(), bb = b.named_buffers();
  ASSERT_EQ(ba.size(), bb.size());
  ASSERT_FALSE(ba.empty());
  for (size_t i = 0; i < ba.size(); ++i) {
    EXPECT_EQ(ba[i].first, bb[i].first);
    EXPECT_TRUE(torch::equal(ba[i].second, bb[i].second)) << ba[i].first;
  }
}

TEST(Model, LoadWeightsOfAnotherArchitectureThrows) {
  TempDir dir;
  Model small(kdistill::mlp(4, {5}, 3));
  small.save(dir / "small.pt");
  Model deeper(kdistill::mlp(4, {5, 5}, 3));
  const auto msg = error_of([&] { deeper.load_weights(dir / "small.pt"); });
  EXPECT_THAT(msg, HasSubstr(dir / "small.pt")) << msg;
  EXPECT_THAT(error_of([&] { small.load_weights(dir / "missing.pt"); }), HasSubstr(dir / "missing.pt"));
  std::ofstream(dir / "garbage.pt") << "not a zip archive at all";
  EXPECT_THAT(error_of([&] { small.load_weights(dir / "garbage.pt"); }), HasSubstr(dir / "garbage.pt"));
}

// Known gap: LibTorch's InputArchive replaces a parameter with `set_` and never compares shapes,
// so weights of mlp:5 load into mlp:6 silently. Enable once load_weights checks shapes.
TEST(Model, LoadWeightsWithSameNamesButOtherShapesThrows) {
  TempDir dir;
  Model five(kdistill::mlp(4, {5}, 3)), six(kdistill::mlp(4, {6}, 3));
  five.save(dir / "five.pt");
  std::vector<torch::Tensor> before;
  for (auto& p : six.parameters()) before.push_back(p.detach().clone());
  auto msg = error_of([&] { six.load_weights(dir / "five.pt"); });
  EXPECT_THAT(msg, HasSubstr("has shape")) << msg;
  auto after = six.parameters();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(after[i], before[i])) << i;
}

TEST(Model, LoadTorchscriptErrorsNameThePath) {
  TempDir dir;
  const std::string missing = dir / "missing.pt";
  auto msg = error_of([&] { Model::load_torchscript(missing); });
  EXPECT_THAT(msg, HasSubstr(missing)) << msg;
  const std::string garbage = dir / "garbage.pt";
  std::ofstream(garbage) << "PK\x03\x04 but not really a zip file";
  msg = error_of([&] { Model::load_torchscript(garbage); });
  EXPECT_THAT(msg, HasSubstr(garbage)) << msg;
  msg = error_of([&] { Model::load_torchscript(dir.path()); });  // a directory
  EXPECT_THAT(msg, HasSubstr(dir.path())) << msg;
}

torch::Tensor fixed_input() { return torch::arange(8, torch::kFloat).reshape({2, 4}) * 0.25 - 1; }
constexpr const char* kPyInput = "x = torch.arange(8, dtype=torch.float32).reshape(2, 4) * 0.25 - 1\n";

torch::Tensor parse_floats(const std::string& text) {
  std::istringstream in(text);
  std::vector<float> v;
  double d;
  while (in >> d) v.push_back(static_cast<float>(d));
  return torch::tensor(v);
}

TEST(Model, TorchscriptRoundTripWithPython) {
  KDISTILL_REQUIRE_PYTHON_TORCH();
  TempDir dir;
  const std::string model = dir / "model.pt", other = dir / "other.pt", out = dir / "out.txt";
  auto r = kdistill::test::python(
      std::string("import torch, torch.nn as nn\n"
                  "torch.manual_seed(0)\n"
                  "m = torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))\n"
                  "m.save(r'") + model + "')\n" +
      "torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(4, 5))).save(r'" + other + "')\n" + kPyInput +
      "with torch.no_grad():\n    y = m(x)\n"
      "open(r'" + out + "', 'w').write(' '.join('%.9e' % v for v in y.flatten().tolist()))\n");
  ASSERT_EQ(r.status, 0) << r.err;
  std::ifstream in(out);
  std::stringstream text;
  text << in.rdbuf();
  const auto reference = parse_floats(text.str()).reshape({2, 3});

  auto m = Model::load_torchscript(model);
  EXPECT_TRUE(m.is_torchscript());
  EXPECT_EQ(m.arch(), "torchscript");
  const auto x = fixed_input();
  EXPECT_TRUE(torch::allclose(m.forward(x).detach(), reference, 0, 1e-6)) << m.forward(x) << reference;

  // Parameters are trainable: d(sum of logits)/d(bias) = batch size, d/dW[j] = sum of the inputs.
  const auto named = m.named_parameters();
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].first, "1.weight");
  EXPECT_EQ(named[1].first, "1.bias");
  EXPECT_EQ(m.num_parameters(), 4 * 3 + 3);
  for (const auto& [name, p] : named) EXPECT_TRUE(p.requires_grad()) << name;
  m.forward(x).sum().backward();
  EXPECT_TRUE(torch::allclose(named[1].second.grad(), torch::full({3}, 2.0f)));
  EXPECT_TRUE(torch::allclose(named[0].second.grad(), x.sum(0).expand({3, 4})));
  m.eval();
  EXPECT_FALSE(m.is_training());
  m.train();
  EXPECT_TRUE(m.is_training());

  // Change the bias, save, and let Python's torch.jit.load read it back.
  {
    torch::NoGradGuard no_grad;
    named[1].second.add_(0.5);
  }
  const auto changed = m.forward(x).detach();
  EXPECT_TRUE(torch::allclose(changed, reference + 0.5, 0, 1e-6));
  const std::string resaved = dir / "resaved.pt";
  m.save(resaved);
  r = kdistill::test::python(std::string("import torch\n") + kPyInput + "m = torch.jit.load(r'" + resaved +
                             "')\nwith torch.no_grad():\n    y = m(x)\n"
                             "print(' '.join('%.9e' % v for v in y.flatten().tolist()))\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(torch::allclose(parse_floats(r.out).reshape({2, 3}), changed, 0, 1e-6)) << r.out;

  // load_weights on a TorchScript model copies the file's parameters back in.
  m.load_weights(model);
  EXPECT_TRUE(torch::allclose(m.forward(x).detach(), reference, 0, 1e-6));
  const auto msg = error_of([&] { m.load_weights(other); });
  EXPECT_THAT(msg, HasSubstr(other)) << msg;
}

}  // namespace

namespace {

// A TorchScript CNN with batch norms whose statistics are far from the identity, so that the
// optimized copy (batch norms folded) could not agree with the original by accident.
TEST(Model, OptimizedForInferenceAgreesAndLeavesTheOriginalTrainable) {
  KDISTILL_REQUIRE_PYTHON_TORCH();
  TempDir dir;
  const std::string path = dir / "cnn.pt";
  auto r = kdistill::test::python(
      "import torch, torch.nn as nn\n"
      "torch.manual_seed(0)\n"
      "m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),\n"
      "                  nn.Linear(4 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 3))\n"
      "with torch.no_grad():\n"
      "    m[1].running_mean.uniform_(-1, 1); m[1].running_var.uniform_(0.5, 2); m[1].weight.uniform_(0.5, 2)\n"
      "torch.jit.script(m.eval()).save(r'" + path + "')\n");
  ASSERT_EQ(r.status, 0) << r.err;
  auto original = Model::load_torchscript(path);
  original.train();
  auto optimized = original.optimized_for_inference();
  EXPECT_TRUE(original.is_training());  // the original is left as it was
  original.eval();
  torch::manual_seed(3);
  const auto x = torch::randn({5, 1, 6, 6});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::allclose(optimized.forward(x), original.forward(x), 1e-5, 1e-5));
  EXPECT_EQ(optimized.arch(), original.arch());
  EXPECT_EQ(optimized.num_parameters(), 0);  // frozen: the weights are constants now
  EXPECT_GT(original.num_parameters(), 0);   // the original keeps its parameters
  for (const auto& p : original.parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(Model, OptimizedForInferenceRefusesACxxModule) {
  Model m(kdistill::mlp(4, {5}, 3), "mlp:5");
  const auto msg = error_of([&] { m.optimized_for_inference(); });
  EXPECT_THAT(msg, HasSubstr("'mlp:5' is a C++ module")) << msg;
}

}  // namespace
