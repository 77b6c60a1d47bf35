// Training sequence models: next-token targets, real-token normalisation that no padding and no
// micro-batching changes, and distillation from a live teacher.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "kdistill/data/tokens.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/losses/tokens.h"
#include "kdistill/models/sequence.h"
#include "kdistill/teachers/cache.h"
#include "kdistill/train/run.h"
#include "kdistill/train/trainer.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kVocab = 11;

// Ragged sequences: row i holds 2 + (i * 5) % 6 real tokens (ids 1..10), then pad id 0.
data::TensorDataset ragged(int64_t rows, int64_t extra_pad = 0, uint64_t seed = 4) {
  torch::manual_seed(seed);
  auto tokens = torch::cat({torch::randint(1, kVocab, {rows, 8}, torch::kLong),
                            torch::zeros({rows, extra_pad}, torch::kLong)}, 1);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t real = 2 + (i * 5) % 6;
    tokens[i].narrow(0, real, tokens.size(1) - real).fill_(0);
  }
  return data::token_windows(tokens, {}, data::TokenOptions().pad_id(0).vocab_size(kVocab));
}

Model student(uint64_t seed = 7) {
  torch::manual_seed(seed);
  return gru_lm(GRULMOptions(kVocab).hidden(8));
}

TrainerOptions plain() {
  return TrainerOptions().progress(false).threads(1).optimizer("sgd").momentum(0).lr(0.5).batch_size(12).max_steps(3)
      .log_every(0).loss(KDLossOptions().alpha(0));
}

std::vector<torch::Tensor> weights_after(const data::TensorDataset& train, TrainerOptions options,
                                         std::shared_ptr<Teacher> teacher = nullptr) {
  auto s = student();
  DistillTrainer trainer(s, std::move(teacher), std::move(options));
  trainer.fit(train);
  return s.parameters();
}

void expect_close(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i], b[i], 0, tol)) << "parameter " << i << " differs by "
                                                     << (a[i] - b[i]).abs().max().item<double>();
  }
}

}  // namespace

TEST(SequenceTraining, OneStepFollowsTheMeanOverRealTokensOfPyTorchsCrossEntropy) {
  auto train = ragged(12);
  // Independent expectation: LibTorch's cross_entropy with ignore_index over flattened positions.
  auto s = student();
  auto logits = s.forward(train.features());
  auto loss = torch::nn::functional::cross_entropy(
      logits.reshape({-1, kVocab}), train.targets().reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-1));
  loss.backward();
  std::vector<torch::Tensor> expected;
  for (auto& p : s.parameters()) expected.push_back((p - 0.5 * p.grad()).detach());
  expect_close(weights_after(train, plain().max_steps(1)), expected, 1e-6);
}

TEST(SequenceTraining, PaddingColumnsChangeNothing) {
  expect_close(weights_after(ragged(12), plain()), weights_after(ragged(12, 5), plain()), 1e-6);
}

TEST(SequenceTraining, MicroBatchesGiveTheWholeBatchsStepForBothReductions) {
  auto train = ragged(12);
  for (auto reduction : {TokenReduction::kMean, TokenReduction::kSequenceSum}) {
    auto whole = weights_after(train, plain().token_reduction(reduction));
    // 5 micro-batches of 2 or 3 rows, holding different numbers of real tokens: weighting them by
    // 1/k instead of by their share of the tokens would move the weights by ~1e-2 here.
    expect_close(weights_after(train, plain().token_reduction(reduction).micro_batches(5)), whole, 2e-6);
  }
  // Per-sample data too (rows 5 and 7 of 12: unequal micro-batches).
  auto rows = rule_data(12, 1);
  auto mlp_weights = [&](int64_t k) {
    torch::manual_seed(3);
    Model m(torch::nn::Sequential(torch::nn::Linear(8, 3)));
    DistillTrainer trainer(m, nullptr, plain().micro_batches(k));
    trainer.fit(rows);
    return m.parameters();
  };
  expect_close(mlp_weights(2), mlp_weights(1), 1e-6);
}

TEST(SequenceTraining, ADistilledStudentMovesTowardsItsTeacherAndIsScoredOnRealTokens) {
  auto train = ragged(48), eval = ragged(12, 0, 9);
  torch::manual_seed(1);
  auto teacher_model = transformer_lm(TransformerLMOptions(kVocab, 16).dim(16).layers(1).heads(2));
  {
    // A random transformer is nearly uniform; a sharper head gives it preferences to learn.
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : teacher_model.named_parameters()) {
      if (name == "head_w") p.mul_(100);
    }
  }
  auto teacher = std::make_shared<ModelTeacher>(teacher_model);
  auto s = student();
  auto before = evaluate(s, eval, predict(teacher_model, eval));
  DistillTrainer trainer(s, teacher, plain().max_steps(0).epochs(30).loss(KDLossOptions().alpha(1).temperature(1)));
  auto result = trainer.fit(train, &eval);
  EXPECT_EQ(result.final_eval.samples, eval.num_labelled());
  EXPECT_GT(result.final_eval.agreement, before.agreement + 0.2);
  auto terms_first = result.epochs.front().terms.at("kd"), terms_last = result.epochs.back().terms.at("kd");
  EXPECT_LT(terms_last, 0.7 * terms_first);  // measured: 2.30 -> 1.15
}

// bf16 is where sequence losses usually turn NaN: -inf attention masks under autocast, and
// log-softmax of bf16 logits over a vocabulary. The loss must stay finite and follow fp32's.
// Sequence caches: a teacher's [N, L, V] outputs cached dense, as top-V (every class kept) and as
// draws train through the same per-token objectives: dense like the live teacher, top-V like
// dense to float16 rounding (streamed: one block holds every row, so the order is the same), and
// the draws towards where dense went.
TEST(SequenceTraining, CachedTeachersServeSequencesDenseTopKAndSampled) {
  TempDir dir;
  auto train = ragged(24);
  torch::manual_seed(5);
  auto live = std::make_shared<ModelTeacher>(transformer_lm(TransformerLMOptions(kVocab, 16).dim(16).layers(1).heads(2)));
  cache_teacher(*live, train, dir / "dense.h5");
  cache_teacher(*live, train, dir / "top.h5", CacheOptions().format("topk").top_k(kVocab));
  cache_teacher(*live, train, dir / "drawn.h5", CacheOptions().format("sampled").samples(256));
  EXPECT_EQ(CachedTeacher(dir / "top.h5").info().classes, kVocab);
  const auto opts = plain().loss(KDLossOptions().alpha(1).temperature(1)).max_steps(4);
  auto cached = [&](const std::string& name, bool stream) {
    return std::make_shared<CachedTeacher>(dir / name, CacheReadOptions().stream(stream));
  };
  const auto from_live = weights_after(train, opts, live);
  const auto from_dense = weights_after(train, opts, cached("dense.h5", false));
  const auto from_top = weights_after(train, opts, cached("top.h5", true));
  const auto from_drawn = weights_after(train, opts, cached("drawn.h5", false));
  expect_close(from_dense, from_live, 1e-5);
  expect_close(from_top, from_dense, 2e-3);
  double moved = 0, off = 0;
  const auto start = student().parameters();
  for (size_t i = 0; i < start.size(); ++i) {
    moved += (from_dense[i] - start[i]).pow(2).sum().item<double>();
    off += (from_drawn[i] - from_dense[i]).pow(2).sum().item<double>();
  }
  EXPECT_GT(moved, 0);
  EXPECT_LT(off, 0.25 * moved) << "the sampled student went elsewhere";
}

TEST(SequenceTraining, ABf16StudentTransformerTrainsWithFiniteLossesCloseToFp32) {
  auto train = ragged(12);
  std::map<std::string, std::vector<double>> losses;
  for (auto p : {Precision::kFloat32, Precision::kBFloat16}) {
    torch::manual_seed(2);
    auto s = transformer_lm(TransformerLMOptions(kVocab, 8).dim(16).layers(1).heads(2));
    DistillTrainer trainer(s, nullptr, plain().max_steps(4).precision(PrecisionOptions().student(p)));
    auto& out = losses[to_string(p)];
    trainer.on_step([&](const StepInfo& info) { out.push_back(info.loss); });
    trainer.fit(train);
    for (const auto& w : s.parameters()) EXPECT_TRUE(torch::isfinite(w).all().item<bool>()) << to_string(p);
  }
  ASSERT_EQ(losses["bf16"].size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(std::isfinite(losses["bf16"][i])) << i;
    EXPECT_NEAR(losses["bf16"][i], losses["fp32"][i], 0.05 * losses["fp32"][i]) << i;
  }
}

// Any C++ module from tokens to [B, L, V] logits trains: here a bigram model (an embedding and a
// linear head), which can only learn next-token statistics, and does.
TEST(SequenceTraining, ACppSequentialLanguageModelTrains) {
  auto train = ragged(48);
  torch::manual_seed(5);
  Model bigram(torch::nn::Sequential(torch::nn::Embedding(kVocab, 8), torch::nn::Linear(8, kVocab)));
  DistillTrainer trainer(bigram, nullptr, plain().max_steps(0).epochs(20).lr(0.5));
  auto result = trainer.fit(train, &train);
  EXPECT_EQ(result.final_eval.samples, train.num_labelled());
  EXPECT_LT(result.epochs.back().train_loss, result.epochs.front().train_loss - 0.1);
}

TEST(SequenceTraining, PreflightNamesTheSequenceShapeItExpected) {
  Model flat(torch::nn::Sequential(torch::nn::Embedding(kVocab, 4), torch::nn::Flatten(), torch::nn::Linear(28, kVocab)));
  DistillTrainer trainer(flat, nullptr, plain());
  EXPECT_THAT(error_of([&] { trainer.fit(ragged(12)); }),
              HasSubstr("expected [2, 7, 11] (11 tokens in the vocabulary of 'tokens')"));
  EXPECT_THAT(error_of([&] { DistillTrainer(student(), nullptr, plain().micro_batches(13)).fit(ragged(12)); }),
              HasSubstr("micro_batches must be in [1, batch_size = 12], got 13"));
}

}  // namespace kdistill::test

namespace kdistill::test {

// A configured run on text (`data.format: text`), distilling a TorchScript transformer into a GRU
// with gradient accumulation: what `kdistill train --config` and Python's `kdistill.train` run.
TEST(SequenceTraining, AConfiguredRunDistilsALanguageModelOnText) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 80; ++i) text += "to be or not to be " + std::to_string(i % 5) + "\n";
  std::ofstream(dir / "train.txt") << text;
  std::ofstream(dir / "test.txt") << text.substr(0, 400);
  torch::manual_seed(0);
  transformer_lm(TransformerLMOptions(256, 16).dim(16).layers(1).heads(2)).save(dir / "teacher.pt");
  gru_lm(GRULMOptions(256).hidden(8)).save(dir / "student.pt");
  std::ofstream(dir / "run.yaml") << "threads: 1\n"
                                     "data: {format: text, path: train.txt, test: test.txt, length: 16}\n"
                                     "teacher: {torchscript: teacher.pt}\nstudent: {torchscript: student.pt}\n"
                                     "loss: {kind: kd, temperature: 1, alpha: 0.5}\n"
                                     "train: {epochs: 1, batch_size: 8, optimizer: adamw, lr: 0.01, micro_batches: 3,"
                                     " token_reduction: sequence_sum, log_every: 0}\n"
                                     "output: out\n";
  auto result = run_config(load_config(dir / "run.yaml"));
  const int64_t test_tokens = (400 - 1) / 16 * 16;
  EXPECT_EQ(result.train.final_eval.samples, test_tokens);
  EXPECT_GE(result.train.final_eval.agreement, 0.0);
  auto report = nlohmann::json::parse(result.report_json);
  EXPECT_EQ(report["models"]["student_kd"]["params"], Model::load_torchscript(dir / "student.pt").num_parameters());
  const auto resolved = io::read_file(dir / "out/config.yaml");
  EXPECT_THAT(resolved, HasSubstr("format: text"));
  EXPECT_THAT(resolved, HasSubstr("micro_batches: 3"));
  EXPECT_THAT(resolved, HasSubstr("token_reduction: sequence_sum"));
  auto saved = Model::load_torchscript(dir / "out/student.pt");
  EXPECT_EQ(saved.forward(torch::zeros({1, 5}, torch::kLong)).sizes(), torch::IntArrayRef({1, 5, 256}));

  std::ofstream(dir / "bad.yaml") << "data: {format: text}\nstudent: {torchscript: student.pt}\n";
  EXPECT_THAT(error_of([&] { load_config(dir / "bad.yaml"); }), HasSubstr("data.path: required when data.format is text"));
}

}  // namespace kdistill::test
