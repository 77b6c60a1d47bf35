// Generation latency: the GRU decodes from its state, the transformer recomputes its (cropped)
// prefix, and the counts add up.
#include "kdistill/bench/generation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "kdistill/models/sequence.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

}  // namespace

TEST(Generation, TheGruDecodesIncrementallyAndTheTransformerRecomputes) {
  torch::manual_seed(0);
  auto gru = gru_lm(GRULMOptions(20).hidden(8));
  // Context 8 < prompt 6 + 5 new tokens: the prefix must be cropped or the forward would fail.
  auto transformer = transformer_lm(TransformerLMOptions(20, 8).dim(8).layers(1).heads(2));
  const auto opts = bench::GenerationOptions().batch(2).prompt(6).new_tokens(5).runs(2);
  auto g = bench::measure_generation(gru, 20, opts);
  auto t = bench::measure_generation(transformer, 20, opts);
  EXPECT_EQ(g.method, "incremental");
  EXPECT_EQ(t.method, "recompute");
  for (const auto& s : {g, t}) {
    EXPECT_EQ(s.batch, 2);
    EXPECT_EQ(s.new_tokens, 5);
    EXPECT_GT(s.prefill_p50_ms, 0);
    EXPECT_GE(s.prefill_p99_ms, s.prefill_p50_ms);
    EXPECT_GT(s.decode_p50_ms, 0);
    EXPECT_GE(s.decode_p99_ms, s.decode_p50_ms);
    EXPECT_GT(s.tokens_per_s, 0);
  }
  EXPECT_TRUE(gru.is_training()) << "the model's mode must be restored";
  // The prompt comes from a generator of its own: the caller's global one is left as it was.
  torch::manual_seed(42);
  const auto expected = torch::rand({3});
  torch::manual_seed(42);
  bench::measure_generation(gru, 20, opts);
  EXPECT_TRUE(torch::rand({3}).equal(expected));
}

TEST(Generation, RefusesAModelThatIsNotALanguageModel) {
  Model mlp(torch::nn::Sequential(torch::nn::Embedding(5, 3), torch::nn::Flatten(), torch::nn::Linear(6, 5)));
  EXPECT_THAT(error_of([&] { bench::measure_generation(mlp, 5, bench::GenerationOptions().prompt(2).runs(1)); }),
              HasSubstr("expected [B, L, V]"));
  EXPECT_THAT(error_of([&] { bench::measure_generation(mlp, 5, bench::GenerationOptions().new_tokens(0)); }),
              HasSubstr("must be >= 1"));
}

}  // namespace kdistill::test
