// The training engine's open parts: a user's own objective, composite objectives and their logged
// terms, feature objectives through the trainer, and teachers that compose.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <torch/torch.h>

#include "kdistill/io/atomic_file.h"
#include "kdistill/models/builders.h"
#include "kdistill/teachers/cache.h"
#include "kdistill/train/trainer.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

Model mlp16(uint64_t seed) {
  torch::manual_seed(seed);
  return Model(mlp(8, {16}, 3), "mlp:16");
}

TrainerOptions quiet() { return TrainerOptions().progress(false).threads(2).lr(0.1).batch_size(32); }

// A user's objective, written against the public header only: match the teacher's probabilities
// in squared error (Brier-style), plus a small entropy bonus. Neither is a built-in.
struct ProbabilityMatch : Objective {
  std::vector<LossTerm> terms(const StepContext& c) override {
    auto p = torch::softmax(c.student_logits, 1);
    auto q = torch::softmax(c.teacher_logits, 1);
    auto entropy = -(p * torch::log(p + 1e-9)).sum(1).mean();
    return {{"brier", (p - q).pow(2).sum(1).mean(), 2.0}, {"entropy", entropy, -0.01}};
  }
};

// Images [n, 1, 8, 8] labelled by which third of the image (top, middle, bottom rows) is brightest.
data::TensorDataset band_images(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 1, 8, 8});
  auto bands = torch::stack({x.narrow(2, 0, 3).mean({1, 2, 3}), x.narrow(2, 3, 2).mean({1, 2, 3}) * 1.2,
                             x.narrow(2, 5, 3).mean({1, 2, 3})}, 1);
  return data::TensorDataset(x, bands.argmax(1), 3, "bands");
}

// Records what the trainer tells an objective about progress.
struct ProgressProbe : Objective {
  std::vector<TrainProgress> seen;
  std::vector<LossTerm> terms(const StepContext& c) override {
    seen.push_back(c.progress);
    return {{"ce", torch::nn::functional::cross_entropy(c.student_logits, c.targets), 1.0}};
  }
  bool needs_teacher() const override { return false; }
};

}  // namespace

TEST(Engine, AUsersOwnObjectiveTrainsAStudentAndEveryTermIsLogged) {
  TempDir dir;
  auto train = rule_data(600, 1).with_label_budget(0), eval = rule_data(300, 2);
  torch::manual_seed(999);
  auto w = torch::randn({8, 3});
  auto teacher = std::make_shared<CallableTeacher>([w](const torch::Tensor& x) { return 3 * x.matmul(w); }, "rule");
  auto student = mlp16(3);
  std::vector<StepInfo> steps;
  DistillTrainer t(student, teacher,
                   quiet().epochs(6).lr(0.05).objective(std::make_shared<ProbabilityMatch>()).output_dir(dir.path()).log_every(1));
  t.on_step([&](const StepInfo& s) { steps.push_back(s); });
  auto r = t.fit(train, &eval);
  EXPECT_GT(r.final_eval.agreement, 0.9);  // it learned the teacher from the user's loss alone
  ASSERT_FALSE(steps.empty());
  // The loss is the terms' weighted sum, computed here from the logged terms.
  for (const auto& s : steps) {
    EXPECT_NEAR(s.loss, 2.0 * s.terms.at("brier") - 0.01 * s.terms.at("entropy"), 1e-5);
  }
  // metrics.jsonl: per step each term by name; per epoch each term's mean over that epoch's steps.
  std::map<int64_t, std::vector<double>> brier_by_epoch;
  std::map<int64_t, double> epoch_mean;
  for (const auto& line : io::read_lines(dir / "metrics.jsonl")) {
    auto j = nlohmann::json::parse(line);
    ASSERT_TRUE(j.contains("terms")) << line;
    if (j["type"] == "step") brier_by_epoch[j["epoch"].get<int64_t>()].push_back(j["terms"]["brier"].get<double>());
    else epoch_mean[j["epoch"].get<int64_t>()] = j["terms"]["brier"].get<double>();
  }
  ASSERT_EQ(epoch_mean.size(), 6u);
  for (auto& [epoch, values] : brier_by_epoch) {
    double sum = 0;
    for (double v : values) sum += v;
    EXPECT_NEAR(epoch_mean.at(epoch), sum / values.size(), 1e-9) << "epoch " << epoch;
    EXPECT_NEAR(r.epochs.at(epoch).terms.at("brier"), sum / values.size(), 1e-9);
  }
  EXPECT_LT(epoch_mean.at(5), epoch_mean.at(0));
}

TEST(Engine, DefaultObjectivesLogKdAndCeTerms) {
  TempDir dir;
  auto train = rule_data(200, 1);
  DistillTrainer t(mlp16(3), std::make_shared<ModelTeacher>(mlp16(7)),
                   quiet().epochs(1).loss(KDLossOptions().temperature(2).alpha(0.9)).output_dir(dir.path()).log_every(1));
  std::vector<StepInfo> steps;
  t.on_step([&](const StepInfo& s) { steps.push_back(s); });
  t.fit(train);
  ASSERT_FALSE(steps.empty());
  for (const auto& s : steps) EXPECT_NEAR(s.loss, 0.9 * s.terms.at("kd") + 0.1 * s.terms.at("ce"), 1e-5);
  auto first = nlohmann::json::parse(io::read_lines(dir / "metrics.jsonl").front());
  EXPECT_EQ(first["terms"].size(), 2u);
  // Without a teacher the baseline's one term is the label cross-entropy.
  DistillTrainer baseline(mlp16(3), nullptr, quiet().epochs(1));
  std::map<std::string, double> terms;
  baseline.on_step([&](const StepInfo& s) { terms = s.terms; });
  baseline.fit(train);
  EXPECT_EQ(terms.size(), 1u);
  EXPECT_EQ(terms.count("ce"), 1u);
}

TEST(Engine, ObjectiveNeedsAreCheckedBeforeTraining) {
  auto train = rule_data(100, 1);
  EXPECT_THAT(error_of([&] {
                DistillTrainer(mlp16(3), nullptr, quiet().objective(std::make_shared<LogitMSEObjective>())).fit(train);
              }),
              HasSubstr("the objective needs a teacher"));
  auto teacher = std::make_shared<ModelTeacher>(mlp16(7));
  EXPECT_THAT(error_of([&] {
                DistillTrainer(mlp16(3), teacher, quiet().objective(std::make_shared<CrossEntropyObjective>()))
                    .fit(train.with_label_budget(0));
              }),
              HasSubstr("the objective needs labels"));
  // A tap that does not exist is refused with the names that do, before the first step.
  auto hint = std::make_shared<HintObjective>(HintOptions("9", "1").student_channels(16).teacher_channels(16).adapter("linear"));
  EXPECT_THAT(error_of([&] { DistillTrainer(mlp16(3), teacher, quiet().objective(hint)).fit(train); }),
              HasSubstr("'9' is not a submodule"));
  // A logit cache has no features.
  auto cached = CachedTeacher::from_logits(torch::randn({100, 3}), "cache");
  auto ok_hint = std::make_shared<HintObjective>(HintOptions("1", "1").student_channels(16).teacher_channels(16).adapter("linear"));
  EXPECT_THAT(error_of([&] { DistillTrainer(mlp16(3), cached, quiet().objective(ok_hint)).fit(train); }),
              HasSubstr("a logit cache stores only logits"));
}

TEST(Engine, HintObjectiveThroughTheTrainerMovesTheStudentFeatureTowardsTheTeachers) {
  auto train = rule_data(400, 1);
  auto teacher = std::make_shared<ModelTeacher>(mlp16(7));
  auto hint = std::make_shared<HintObjective>(HintOptions("1", "1").student_channels(16).teacher_channels(16).adapter("linear"));
  DistillTrainer t(mlp16(3), teacher, quiet().epochs(5).objective(hint));
  auto r = t.fit(train);
  EXPECT_LT(r.epochs.back().terms.at("hint"), 0.5 * r.epochs.front().terms.at("hint"));
  EXPECT_EQ(t.student().named_parameters().size(), 4u);  // the adapter is not the student's
}

// Regression: an ensemble with a cache among its members used to say it ran on its inputs
// (samples() -1), so the trainer scored the evaluation set with the cache's *training* rows and
// skipped the row-count check.
TEST(Engine, EnsembleWithACachedMemberLooksRowsUpByIndex) {
  auto train = rule_data(200, 1), eval = rule_data(100, 2);
  auto live = std::make_shared<ModelTeacher>(mlp16(7));
  auto cached = CachedTeacher::from_logits(compute_teacher_logits(*live, train), "cache");
  auto ensemble = std::make_shared<EnsembleTeacher>(std::vector<std::shared_ptr<Teacher>>{live, cached});
  EXPECT_EQ(ensemble->samples(), 200);
  EXPECT_FALSE(ensemble->runs_on_inputs());
  EXPECT_TRUE(EnsembleTeacher({live, live}).runs_on_inputs());

  DistillTrainer t(mlp16(3), ensemble, quiet().epochs(1));
  auto r = t.fit(train, &eval);
  EXPECT_EQ(r.teacher_accuracy, -1);          // not measured from the wrong rows
  EXPECT_EQ(r.final_eval.agreement, -1);
  EXPECT_THAT(error_of([&] { DistillTrainer(mlp16(3), ensemble, quiet().epochs(1)).fit(rule_data(150, 3)); }),
              HasSubstr("holds logits for 200 samples but the training set 'rule' has 150"));
  // Cached members that disagree on their row count are refused when the ensemble is made.
  auto other = CachedTeacher::from_logits(torch::zeros({150, 3}), "other");
  EXPECT_THAT(error_of([&] { EnsembleTeacher({cached, other}); }), HasSubstr("holds 150 samples"));
}

TEST(Engine, WeightedEnsembleLogitsAndMembers) {
  auto a = CachedTeacher::from_logits(torch::tensor({{2.0, 0.0, -1.0}}), "a");
  auto b = CachedTeacher::from_logits(torch::tensor({{0.0, 3.0, 0.0}}), "b");
  EnsembleTeacher ens({a, b}, {3.0, 1.0});
  auto idx = torch::zeros({1}, torch::kLong);
  auto out = ens.outputs(torch::zeros({1, 1}), idx);
  ASSERT_EQ(out.member_logits.size(), 2u);
  EXPECT_DOUBLE_EQ(out.member_weights[0], 0.75);
  // softmax(logits) is the weighted mean of the members' probabilities, computed by hand.
  auto pa = torch::softmax(torch::tensor({2.0, 0.0, -1.0}, torch::kDouble), 0);
  auto pb = torch::softmax(torch::tensor({0.0, 3.0, 0.0}, torch::kDouble), 0);
  auto want = 0.75 * pa + 0.25 * pb;
  EXPECT_TRUE(torch::allclose(torch::softmax(out.logits[0].to(torch::kDouble), 0), want, 1e-6, 1e-7));
  EXPECT_THAT(error_of([&] { EnsembleTeacher({a, b}, {1.0}); }), HasSubstr("2 members but 1 weights"));
  EXPECT_THAT(error_of([&] { EnsembleTeacher({a, b}, {1.0, 0.0}); }), HasSubstr("must be > 0"));
}

TEST(Engine, ObjectivesSeeTheStepEpochAndRunLength) {
  auto probe = std::make_shared<ProgressProbe>();
  DistillTrainer t(mlp16(3), nullptr, quiet().epochs(3).objective(probe));
  t.fit(rule_data(100, 1));  // 100 samples in batches of 32: 4 steps an epoch
  ASSERT_EQ(probe->seen.size(), 13u);  // the preflight probe, then 12 steps
  probe->seen.erase(probe->seen.begin());
  for (int64_t i = 0; i < 12; ++i) {
    EXPECT_EQ(probe->seen[i].step, i);
    EXPECT_EQ(probe->seen[i].epoch, i / 4);
    EXPECT_EQ(probe->seen[i].total_steps, 12);
    EXPECT_EQ(probe->seen[i].steps_per_epoch, 4);
  }
}

TEST(Engine, AttentionTransferThroughTheTrainerAlignsTheStudentsAttentionWithTheTeachers) {
  auto train = band_images(300, 1);
  torch::manual_seed(5);
  auto teacher = std::make_shared<ModelTeacher>(Model(cnn({1, 8, 8}, {8, 16}, 3), "cnn:8,16"));
  torch::manual_seed(6);
  Model student(cnn({1, 8, 8}, {4, 8}, 3), "cnn:4,8");
  const auto params = student.num_parameters();
  // Layer 2 is the first ReLU ([B, 4, 8, 8] and [B, 8, 8, 8]), layer 6 the second ([B, 8, 4, 4], [B, 16, 4, 4]).
  auto at = std::make_shared<AttentionTransferObjective>(AttentionTransferOptions({{"2", "2"}, {"6", "6"}}));
  DistillTrainer t(student, teacher, quiet().epochs(6).lr(0.05).objective(at));
  auto r = t.fit(train);
  EXPECT_LT(r.epochs.back().terms.at("at"), 0.5 * r.epochs.front().terms.at("at"));
  EXPECT_EQ(t.student().num_parameters(), params);
}

}  // namespace kdistill::test

