// The reference language models: causal, shaped [B, L, V], trainable, incremental decoding equal
// to the full forward, and files that Python's torch.jit.load reads with the same outputs.
#include "kdistill/models/sequence.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include <torch/script.h>
#include <torch/torch.h>

#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

Model small_transformer() {
  torch::manual_seed(0);
  return transformer_lm(TransformerLMOptions(13, 10).dim(12).layers(2).heads(3));
}

}  // namespace

TEST(SequenceModels, TheTransformerIsCausal) {
  auto m = small_transformer();
  m.eval();
  EXPECT_EQ(m.arch(), "transformer:12,2,3");
  auto x = torch::randint(0, 13, {2, 10}, torch::kLong);
  auto y = m.forward(x);
  ASSERT_EQ(y.sizes(), torch::IntArrayRef({2, 10, 13}));
  auto changed = x.clone();
  changed.select(1, 6).fill_(12 - changed[0][6].item<int64_t>() % 12);  // a different token at position 6
  auto z = m.forward(changed);
  EXPECT_TRUE(torch::allclose(y.narrow(1, 0, 6), z.narrow(1, 0, 6), 1e-6, 1e-6));  // earlier positions unmoved
  EXPECT_GT((y.narrow(1, 6, 4) - z.narrow(1, 6, 4)).abs().max().item<double>(), 1e-4);
  // Shorter inputs use the first positions only.
  EXPECT_TRUE(torch::allclose(m.forward(x.narrow(1, 0, 4)), y.narrow(1, 0, 4), 1e-6, 1e-6));
  EXPECT_EQ(m.script()->run_method("context").toInt(), 10);
}

TEST(SequenceModels, TheGrusStepFromItsStateEqualsTheFullForward) {
  torch::manual_seed(1);
  auto m = gru_lm(GRULMOptions(9).hidden(6).layers(2));
  m.eval();
  auto x = torch::randint(0, 9, {3, 7}, torch::kLong);
  auto full = m.forward(x);
  auto script = m.script();
  auto h = script->run_method("initial_state", int64_t{3}).toTensor();
  for (int64_t t = 0; t < 7; ++t) {
    auto out = script->run_method("step", x.narrow(1, t, 1), h).toTuple();
    h = out->elements()[1].toTensor();
    EXPECT_TRUE(torch::allclose(out->elements()[0].toTensor().squeeze(1), full.select(1, t), 1e-5, 1e-6)) << t;
  }
}

TEST(SequenceModels, GradientsReachEveryParameter) {
  for (auto m : {small_transformer(), gru_lm(GRULMOptions(13).hidden(5))}) {
    m.train();
    m.forward(torch::randint(0, 13, {2, 6}, torch::kLong)).pow(2).mean().backward();
    for (const auto& [name, p] : m.named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << m.arch() << " " << name;
      EXPECT_GT(p.grad().abs().sum().item<double>(), 0) << m.arch() << " " << name;
    }
  }
}

TEST(SequenceModels, SavedModelsLoadInPythonWithTheSameOutputs) {
  KDISTILL_REQUIRE_PYTHON_TORCH();
  TempDir dir;
  auto x = torch::randint(0, 13, {2, 8}, torch::kLong);
  std::ofstream(dir / "x.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(x.data_ptr<int64_t>()), static_cast<std::streamsize>(x.numel() * 8));
  for (auto m : {small_transformer(), gru_lm(GRULMOptions(13).hidden(5))}) {
    m.eval();
    m.save(dir / "model.pt");
    auto out = python("import numpy as np, torch\n"
                      "d = '" + dir.path() + "'\n"
                      "m = torch.jit.load(d + '/model.pt')\n"
                      "x = torch.from_numpy(np.fromfile(d + '/x.bin', dtype=np.int64).reshape(2, 8))\n"
                      "m(x).detach().numpy().astype(np.float32).tofile(d + '/y.bin')\n");
    ASSERT_EQ(out.status, 0) << out.err;
    auto expected = m.forward(x).contiguous();
    auto y = torch::empty_like(expected);
    std::ifstream(dir / "y.bin", std::ios::binary)
        .read(reinterpret_cast<char*>(y.data_ptr<float>()), static_cast<std::streamsize>(y.numel() * 4));
    EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-6)) << m.arch();
  }
}

TEST(SequenceModels, RefuseBadSizes) {
  EXPECT_THAT(error_of([] { transformer_lm(TransformerLMOptions(10, 8).dim(10).heads(3)); }),
              HasSubstr("dim 10 is not a multiple of heads 3"));
  EXPECT_THAT(error_of([] { transformer_lm(TransformerLMOptions(0, 8)); }), HasSubstr("must be >= 1"));
  EXPECT_THAT(error_of([] { gru_lm(GRULMOptions(10).hidden(0)); }), HasSubstr("must be >= 1, got 10, 0, 1"));
}

}  // namespace kdistill::test
