#include "kdistill/train/trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "io/atomic_file_hook.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/models/builders.h"
#include "support.h"

namespace kdistill::test {
namespace {

namespace fs = std::filesystem;

// A 3-class problem with a linear rule: separable, so a small MLP learns it well.
data::TensorDataset synthetic(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 8});
  torch::manual_seed(999);  // the rule is the same for every split
  auto w = torch::randn({8, 3});
  return data::TensorDataset(x, x.matmul(w).argmax(1), 3, "synthetic");
}

Model small_mlp(uint64_t seed, int64_t outputs = 3, double dropout = 0.0) {
  torch::manual_seed(seed);
  return Model(mlp(8, {16}, outputs, dropout), "mlp:16");
}

TrainerOptions quiet() { return TrainerOptions().progress(false).threads(2).lr(0.1).batch_size(32); }

std::vector<torch::Tensor> snapshot(const Model& m) {
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

}  // namespace

namespace {
// `--kill-in-write N MODE`: SIGKILL inside the Nth checkpoint write, with the temporary complete
// but not yet renamed (MODE "complete") or cut to half its size first (MODE "partial", what a
// kill during torch::save leaves).
int64_t checkpoint_writes = 0, kill_in_write = -1;
bool kill_partial = false;

void kill_inside_checkpoint_write(const std::string& path, const std::string& tmp) {
  if (fs::path(path).filename() != "last.pt" || ++checkpoint_writes != kill_in_write) return;
  if (kill_partial) fs::resize_file(tmp, fs::file_size(tmp) / 2);
  std::raise(SIGKILL);
}
}  // namespace

TrainerOptions child_options(const std::string& out) {
  return quiet()
      .epochs(3)
      .seed(5)
      .schedule("cosine")
      .warmup_steps(3)
      .output_dir(out)
      .checkpoint_every(5)
      .log_every(1)
      .loss(KDLossOptions().temperature(2).alpha(0.7));
}

// KD plus a FitNets hint whose linear adapter (an objective parameter) maps the student's hidden
// layer onto the teacher's.
std::shared_ptr<Objective> kd_with_hint() {
  torch::manual_seed(21);
  auto loss = std::make_shared<CompositeObjective>();
  loss->add("kd", std::make_shared<KDObjective>(KDLossOptions().temperature(2).alpha(0.7)));
  loss->add("hint", std::make_shared<HintObjective>(HintOptions("1", "1").student_channels(16).teacher_channels(16)
                                                        .adapter("linear")), 0.5);
  return loss;
}

// DKD with its weight warmed up over 2 epochs and its temperature annealed, plus label
// cross-entropy: every scheduled value depends on the step counter that a checkpoint restores.
std::shared_ptr<Objective> scheduled_dkd() {
  auto loss = std::make_shared<CompositeObjective>();
  auto dkd = std::make_shared<DKDObjective>(DKDLossOptions().beta(2));
  dkd->set_temperature(Schedule(ScheduleOptions().kind("cosine").start(6).end(2)));
  loss->add("dkd", dkd, Schedule(ScheduleOptions().kind("linear").start(0).end(1).span_epochs(2)));
  loss->add("ce", std::make_shared<CrossEntropyObjective>());
  return loss;
}

// The child job the kill tests start: 3 epochs of distillation with dropout, checkpoints every
// 5 steps, metrics every step. `--kill-at-step K` SIGKILLs itself right after step K; `--hint`
// adds a hint objective with parameters of its own (saved at the end as adapter.pt).
int train_child(const std::vector<std::string>& args) {
  std::string out;
  int64_t kill_at = -1;
  bool resume = false, hint = false, bf16 = false, scheduled = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--out") out = args.at(++i);
    else if (args[i] == "--hint") hint = true;
    else if (args[i] == "--bf16") bf16 = true;
    else if (args[i] == "--scheduled") scheduled = true;
    else if (args[i] == "--kill-at-step") kill_at = std::stoll(args.at(++i));
    else if (args[i] == "--resume") resume = true;
    else if (args[i] == "--kill-in-write") {
      kill_in_write = std::stoll(args.at(++i));
      kill_partial = args.at(++i) == "partial";
      io::detail::set_atomic_write_hook(kill_inside_checkpoint_write);
    }
  }
  auto train = synthetic(500, 1).with_label_budget(200);
  auto eval = synthetic(100, 2);
  auto teacher = std::make_shared<ModelTeacher>(small_mlp(7));
  auto student = small_mlp(11, 3, 0.2);
  auto options = child_options(out);
  if (hint) options.objective(kd_with_hint());
  if (scheduled) options.objective(scheduled_dkd());
  if (bf16) options.precision(PrecisionOptions().teacher(Precision::kBFloat16).student(Precision::kBFloat16));
  DistillTrainer trainer(student, teacher, options);
  if (resume) trainer.resume();
  trainer.on_step([&](const StepInfo& s) {
    if (s.step == kill_at) std::raise(SIGKILL);
  });
  trainer.fit(train, &eval);
  student.save((fs::path(out) / "final.pt").string());
  if (hint) torch::save(trainer.objective().parameters(), (fs::path(out) / "adapter.pt").string());
  return 0;
}

TEST(Trainer, BaselineLearnsFromLabels) {
  auto train = synthetic(600, 1), eval = synthetic(300, 2);
  auto student = small_mlp(3);
  DistillTrainer trainer(student, nullptr, quiet().epochs(8));
  auto r = trainer.fit(train, &eval);
  EXPECT_GT(r.final_eval.accuracy, 0.9);
  EXPECT_EQ(r.steps, 8 * 19);  // ceil(600 / 32) = 19 steps per epoch
  EXPECT_EQ(r.epochs.size(), 8u);
  EXPECT_LT(r.epochs.back().train_loss, r.epochs.front().train_loss);
  EXPECT_EQ(r.teacher_accuracy, -1);
}

TEST(Trainer, DistillsFromSoftTargetsWithoutAnyLabel) {
  // The teacher is a fixed linear rule; the student sees no label at all (every target -1).
  auto train = synthetic(600, 1).with_label_budget(0), eval = synthetic(300, 2);
  torch::manual_seed(999);
  auto w = torch::randn({8, 3});
  auto teacher = std::make_shared<CallableTeacher>([w](const torch::Tensor& x) { return 3 * x.matmul(w); }, "rule");
  auto student = small_mlp(3);
  DistillTrainer trainer(student, teacher, quiet().epochs(8).loss(KDLossOptions().temperature(2).alpha(1.0)));
  auto r = trainer.fit(train, &eval);
  EXPECT_GT(r.final_eval.agreement, 0.9);
  EXPECT_GT(r.final_eval.accuracy, 0.9);  // the rule is the labelling rule
  EXPECT_GT(r.teacher_accuracy, 0.999);
}

TEST(Trainer, TeacherIsNeverChanged) {
  auto teacher_model = small_mlp(7);
  auto before = snapshot(teacher_model);
  auto student = small_mlp(3);
  DistillTrainer trainer(student, std::make_shared<ModelTeacher>(teacher_model), quiet().epochs(2));
  trainer.fit(synthetic(200, 1));
  EXPECT_TRUE(same(before, snapshot(teacher_model)));
  for (auto& p : teacher_model.parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST(Trainer, SameSeedGivesBitwiseEqualWeights) {
  auto train = synthetic(300, 1);
  auto run_once = [&](uint64_t seed) {
    auto s = small_mlp(3, 3, 0.3);
    DistillTrainer t(s, std::make_shared<ModelTeacher>(small_mlp(7)), quiet().epochs(2).seed(seed));
    t.fit(train);
    return snapshot(s);
  };
  auto a = run_once(1), b = run_once(1), c = run_once(2);
  EXPECT_TRUE(same(a, b));
  EXPECT_FALSE(same(a, c));
}

TEST(Trainer, ResumeAfterSigkillIsBitwiseIdentical) {
  TempDir ref, killed;
  const std::string exe = self_exe();
  auto full = run(exe + " --child=train --out " + ref.path());
  ASSERT_EQ(full.status, 0) << full.err;

  // Killed before the first checkpoint (step 3), mid-epoch (step 11 of 16 per epoch), right
  // after an epoch's last step (16) and late in the last epoch (44); resumed each time.
  for (int kill : {3, 11, 16, 44}) {
    auto r = run(exe + " --child=train --resume --out " + killed.path() + " --kill-at-step " + std::to_string(kill));
    ASSERT_EQ(r.status, 128 + SIGKILL) << "kill at " << kill << ": " << r.err;
    ASSERT_FALSE(fs::exists(killed / "final.pt"));
  }
  auto done = run(exe + " --child=train --resume --out " + killed.path());
  ASSERT_EQ(done.status, 0) << done.err;

  auto a = small_mlp(0, 3, 0.2), b = small_mlp(0, 3, 0.2);
  a.load_weights(ref / "final.pt");
  b.load_weights(killed / "final.pt");
  EXPECT_TRUE(same(snapshot(a), snapshot(b)));

  // metrics.jsonl: every step and every epoch exactly once, identical steps to the reference.
  auto count = [](const std::string& path) {
    std::map<std::string, int> seen;
    for (const auto& line : io::read_lines(path)) {
      auto j = nlohmann::json::parse(line);
      seen[j["type"].get<std::string>() + std::to_string(j["type"] == "epoch" ? j["epoch"].get<int>() : j["step"].get<int>())]++;
    }
    return seen;
  };
  auto seen_ref = count(ref / "metrics.jsonl"), seen_killed = count(killed / "metrics.jsonl");
  EXPECT_EQ(seen_ref.size(), 48u + 3u);
  EXPECT_EQ(seen_ref, seen_killed);
  for (auto& [key, n] : seen_killed) EXPECT_EQ(n, 1) << key;
}

// The same with an objective that owns parameters: the adapter is checkpointed with the student
// and the optimizer, and both end bitwise equal to an uninterrupted run's.
TEST(Trainer, ResumeAfterSigkillIsBitwiseWithAnObjectiveThatOwnsParameters) {
  TempDir ref, killed;
  const std::string exe = self_exe();
  auto full = run(exe + " --child=train --hint --out " + ref.path());
  ASSERT_EQ(full.status, 0) << full.err;
  for (int kill : {7, 16, 33}) {
    auto r = run(exe + " --child=train --hint --resume --out " + killed.path() + " --kill-at-step " +
                 std::to_string(kill));
    ASSERT_EQ(r.status, 128 + SIGKILL) << "kill at " << kill << ": " << r.err;
  }
  auto done = run(exe + " --child=train --hint --resume --out " + killed.path());
  ASSERT_EQ(done.status, 0) << done.err;
  auto a = small_mlp(0, 3, 0.2), b = small_mlp(0, 3, 0.2);
  a.load_weights(ref / "final.pt");
  b.load_weights(killed / "final.pt");
  EXPECT_TRUE(same(snapshot(a), snapshot(b)));
  std::vector<torch::Tensor> adapter_ref, adapter_killed;
  torch::load(adapter_ref, ref / "adapter.pt");
  torch::load(adapter_killed, killed / "adapter.pt");
  ASSERT_EQ(adapter_ref.size(), 2u);  // weight and bias
  EXPECT_TRUE(same(adapter_ref, adapter_killed));
  // The adapter trained (it is not its initial value) and is not part of the saved student.
  auto init = kd_with_hint()->parameters();
  EXPECT_FALSE(same(init, adapter_ref));
  EXPECT_EQ(a.named_parameters().size(), 4u);
  // Each step line names both terms.
  auto lines = io::read_lines(killed / "metrics.jsonl");
  ASSERT_FALSE(lines.empty());
  auto first = nlohmann::json::parse(lines.front());
  EXPECT_TRUE(first["terms"].contains("kd.kd") && first["terms"].contains("kd.ce") && first["terms"].contains("hint"))
      << lines.front();
}

// Schedules (a warmed-up weight, an annealed temperature) resume where they were: their position
// is the step counter the checkpoint holds, so the killed run ends bitwise equal.
TEST(Trainer, ResumeAfterSigkillIsBitwiseWithScheduledWeightAndTemperature) {
  TempDir ref, killed;
  const std::string exe = self_exe();
  auto full = run(exe + " --child=train --scheduled --out " + ref.path());
  ASSERT_EQ(full.status, 0) << full.err;
  for (int kill : {9, 27}) {
    auto r = run(exe + " --child=train --scheduled --resume --out " + killed.path() + " --kill-at-step " +
                 std::to_string(kill));
    ASSERT_EQ(r.status, 128 + SIGKILL) << "kill at " << kill << ": " << r.err;
  }
  auto done = run(exe + " --child=train --scheduled --resume --out " + killed.path());
  ASSERT_EQ(done.status, 0) << done.err;
  auto a = small_mlp(0, 3, 0.2), b = small_mlp(0, 3, 0.2);
  a.load_weights(ref / "final.pt");
  b.load_weights(killed / "final.pt");
  EXPECT_TRUE(same(snapshot(a), snapshot(b)));
  auto first = nlohmann::json::parse(io::read_lines(killed / "metrics.jsonl").front());
  EXPECT_TRUE(first["terms"].contains("dkd.tckd") && first["terms"].contains("dkd.nckd") && first["terms"].contains("ce"))
      << first.dump();
}

// bf16 teacher and bf16 student compute: exact resume still holds for that precision, and the
// weights, checkpoints and saved student stay float32.
TEST(Trainer, ResumeAfterSigkillIsBitwiseInBf16) {
  TempDir ref, killed;
  const std::string exe = self_exe();
  auto full = run(exe + " --child=train --bf16 --out " + ref.path());
  ASSERT_EQ(full.status, 0) << full.err;
  for (int kill : {11, 30}) {
    auto r = run(exe + " --child=train --bf16 --resume --out " + killed.path() + " --kill-at-step " +
                 std::to_string(kill));
    ASSERT_EQ(r.status, 128 + SIGKILL) << "kill at " << kill << ": " << r.err;
  }
  auto done = run(exe + " --child=train --bf16 --resume --out " + killed.path());
  ASSERT_EQ(done.status, 0) << done.err;
  auto a = small_mlp(0, 3, 0.2), b = small_mlp(0, 3, 0.2), fp32 = small_mlp(0, 3, 0.2);
  a.load_weights(ref / "final.pt");
  b.load_weights(killed / "final.pt");
  EXPECT_TRUE(same(snapshot(a), snapshot(b)));
  for (auto& p : a.parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
  // It trained in bf16: not the fp32 run's weights.
  TempDir plain;
  ASSERT_EQ(run(exe + " --child=train --out " + plain.path()).status, 0);
  fp32.load_weights(plain / "final.pt");
  EXPECT_FALSE(same(snapshot(a), snapshot(fp32)));
  // A bf16 checkpoint does not resume an fp32 run.
  DistillTrainer other(small_mlp(0, 3, 0.2), std::make_shared<ModelTeacher>(small_mlp(7)), child_options(plain.path()));
  EXPECT_THAT(error_of([&] { other.resume(killed / "checkpoints/last.pt"); }),
              ::testing::HasSubstr("was written with student_bf16 1, this run has student_bf16 0"));
}

// bf16 on `device` (CUDA autocast on a GPU): the student distils from a bf16 teacher alone and
// learns its rule, its master weights stay fp32 on the device, and it saves as fp32 that loads on the
// CPU. The same seed again gives the same weights up to 1e-6.
void distil_in_bf16_on(const std::string& device) {
  TempDir dir;
  auto train = synthetic(600, 1), eval = synthetic(300, 2);
  auto fit = [&](const std::string& saved_as) {
    auto student = small_mlp(3);
    auto teacher = std::make_shared<ModelTeacher>(small_mlp(7));
    DistillTrainer trainer(student, teacher,
                           quiet()
                               .epochs(8)
                               .device(device)
                               .loss(KDLossOptions().temperature(2).alpha(1.0))  // the teacher alone
                               .precision(PrecisionOptions().teacher(Precision::kBFloat16).student(Precision::kBFloat16)));
    auto r = trainer.fit(train, &eval);
    student.save(saved_as);
    for (auto& p : student.parameters()) {
      EXPECT_EQ(p.device().type(), torch::Device(device).type());
      EXPECT_EQ(p.scalar_type(), torch::kFloat);
    }
    return std::make_pair(r, snapshot(student));
  };
  const auto [r, weights] = fit(dir / "a.pt");
  EXPECT_GT(r.final_eval.agreement, 0.8);
  EXPECT_LT(r.epochs.back().train_loss, r.epochs.front().train_loss);
  auto saved = small_mlp(0);
  saved.load_weights(dir / "a.pt");
  for (auto& p : saved.parameters()) {
    EXPECT_FALSE(p.is_cuda());
    EXPECT_EQ(p.scalar_type(), torch::kFloat);
  }
  const auto again = fit(dir / "b.pt").second;
  double most = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    most = std::max(most, (weights[i] - again[i]).abs().max().item<double>());
  }
  EXPECT_LT(most, 1e-6);
}

TEST(Trainer, DistilsInBf16AndSavesFp32) { distil_in_bf16_on("cpu"); }

TEST(Trainer, DistilsOnCudaInBf16AndSavesFp32_CUDA) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: training on CUDA in bf16 is not tested here";
  distil_in_bf16_on("cuda");
}

// A checkpoint records its objective's terms: another objective (here without parameters, so the
// tensors alone would match) is refused at fit().
TEST(Trainer, CheckpointOfAnObjectiveWithOtherTermsIsRefused) {
  TempDir dir;
  auto train = synthetic(200, 1);
  auto teacher = std::make_shared<ModelTeacher>(small_mlp(7));
  DistillTrainer(small_mlp(3), teacher, quiet().epochs(2).max_steps(3).output_dir(dir.path()).checkpoint_every(2))
      .fit(train);
  DistillTrainer mse(small_mlp(3), teacher,
                     quiet().epochs(2).output_dir(dir.path()).objective(std::make_shared<LogitMSEObjective>()));
  ASSERT_TRUE(mse.resume());
  EXPECT_THAT(error_of([&] { mse.fit(train); }),
              ::testing::HasSubstr("was written by an objective with the terms [kd,ce], this run's has [mse]"));
}

// A checkpoint written without the objective's parameters does not fit a run that has them.
TEST(Trainer, CheckpointOfAnotherObjectiveIsRefused) {
  TempDir dir;
  auto train = synthetic(200, 1);
  auto teacher = std::make_shared<ModelTeacher>(small_mlp(7));
  DistillTrainer(small_mlp(3), teacher, quiet().epochs(1).output_dir(dir.path())).fit(train);
  DistillTrainer with_hint(small_mlp(3), teacher, quiet().epochs(1).objective(kd_with_hint()));
  EXPECT_THAT(error_of([&] { with_hint.resume(dir / "checkpoints/last.pt"); }),
              ::testing::HasSubstr("has 0 parameters but the objective has 2"));
}

// Killed inside a checkpoint write, twice: once with the temporary cut short, once complete but
// not renamed. Each time the checkpoint on disk is the previous whole one (it loads), the next
// run resumes from it and removes the dead run's temporary, and the end is bitwise the same.
TEST(Trainer, KilledInsideACheckpointWriteLosesNothing) {
  TempDir ref, killed;
  const std::string exe = self_exe();
  auto full = run(exe + " --child=train --out " + ref.path());
  ASSERT_EQ(full.status, 0) << full.err;
  auto temporaries = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(killed / "checkpoints")) {
      n += e.path().filename().string().find(".tmp.") != std::string::npos;
    }
    return n;
  };
  // Checkpoints come every 5 steps and at each epoch's end (16 steps). The first child dies in
  // its 3rd write (step 15); the second resumes from step 10 and dies in its 2nd (step 16).
  for (const auto& [write, mode] : {std::pair{3, "partial"}, {2, "complete"}}) {
    auto r = run(exe + " --child=train --resume --out " + killed.path() + " --kill-in-write " + std::to_string(write) +
                 " " + mode);
    ASSERT_EQ(r.status, 128 + SIGKILL) << mode << ": " << r.err;
    EXPECT_EQ(temporaries(), 1) << mode;
    // What is on disk under the checkpoint's name is a whole checkpoint: a fresh trainer loads it.
    TempDir probe_dir;
    auto probe = small_mlp(0, 3, 0.2);
    DistillTrainer t(probe, std::make_shared<ModelTeacher>(small_mlp(7)), child_options(probe_dir.path()));
    EXPECT_NO_THROW(t.resume(killed / "checkpoints/last.pt")) << mode;
  }
  auto done = run(exe + " --child=train --resume --out " + killed.path());
  ASSERT_EQ(done.status, 0) << done.err;
  EXPECT_EQ(temporaries(), 0);
  auto a = small_mlp(0, 3, 0.2), b = small_mlp(0, 3, 0.2);
  a.load_weights(ref / "final.pt");
  b.load_weights(killed / "final.pt");
  EXPECT_TRUE(same(snapshot(a), snapshot(b)));
}

TEST(Trainer, CorruptOrMismatchedCheckpointIsRefusedAndChangesNothing) {
  TempDir dir;
  auto train = synthetic(200, 1);
  {
    auto s = small_mlp(3);
    DistillTrainer t(s, nullptr, quiet().epochs(1).output_dir(dir.path()));
    t.fit(train);
  }
  const std::string ckpt = dir / "checkpoints/last.pt";
  ASSERT_TRUE(fs::exists(ckpt));
  auto bytes = io::read_file(ckpt);

  auto fresh = small_mlp(4);
  auto before = snapshot(fresh);
  DistillTrainer t(fresh, nullptr, quiet().epochs(1));

  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x40;
  io::atomic_write_string(dir / "flipped.pt", flipped);
  EXPECT_THAT(error_of([&] { t.resume(dir / "flipped.pt"); }), ::testing::HasSubstr("corrupt"));

  io::atomic_write_string(dir / "short.pt", bytes.substr(0, bytes.size() - 100));
  EXPECT_THAT(error_of([&] { t.resume(dir / "short.pt"); }), ::testing::HasSubstr("truncated"));

  io::atomic_write_string(dir / "garbage.pt", "not a checkpoint at all, just text\n");
  EXPECT_THAT(error_of([&] { t.resume(dir / "garbage.pt"); }), ::testing::HasSubstr("wrong header"));
  EXPECT_TRUE(same(before, snapshot(fresh)));

  auto wide = Model(mlp(8, {32}, 3), "mlp:32");
  DistillTrainer other_arch(wide, nullptr, quiet().epochs(1));
  EXPECT_THAT(error_of([&] { other_arch.resume(ckpt); }), ::testing::HasSubstr("does not match the student"));

  DistillTrainer other_seed(small_mlp(4), nullptr, quiet().epochs(1).seed(42));
  EXPECT_THAT(error_of([&] { other_seed.resume(ckpt); }), ::testing::HasSubstr("seed"));

  EXPECT_TRUE(t.resume(ckpt));
  EXPECT_FALSE(same(before, snapshot(fresh)));  // a good checkpoint does load
}

TEST(Trainer, FreshRunRefusesAnOutputDirectoryHoldingARun) {
  TempDir dir;
  auto train = synthetic(100, 1);
  DistillTrainer(small_mlp(3), nullptr, quiet().epochs(1).output_dir(dir.path())).fit(train);
  auto metrics_before = io::read_file(dir / "metrics.jsonl");
  DistillTrainer again(small_mlp(3), nullptr, quiet().epochs(1).output_dir(dir.path()));
  EXPECT_THAT(error_of([&] { again.fit(train); }), ::testing::HasSubstr("already holds a run"));
  EXPECT_EQ(io::read_file(dir / "metrics.jsonl"), metrics_before);
}

TEST(Trainer, NonFiniteLossStopsNamingTheStepOrIsSkipped) {
  auto train = synthetic(320, 1);
  auto calls = std::make_shared<int>(0);
  auto nan_at_third = [calls](const torch::Tensor& x) {
    auto out = torch::zeros({x.size(0), 3});
    // The first call is the trainer's shape probe; the third batch's logits are NaN.
    if (++*calls == 4) out.fill_(std::numeric_limits<float>::quiet_NaN());
    return out;
  };
  DistillTrainer stop(small_mlp(3), std::make_shared<CallableTeacher>(nan_at_third), quiet().epochs(1));
  auto msg = error_of([&] { stop.fit(train); });
  EXPECT_NE(msg.find("at step 3"), std::string::npos) << msg;

  *calls = 0;
  auto student = small_mlp(3);
  DistillTrainer skip(student, std::make_shared<CallableTeacher>(nan_at_third), quiet().epochs(1).on_nonfinite("skip"));
  auto r = skip.fit(train);
  EXPECT_EQ(r.steps, 10);
  for (auto& p : student.parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
}

TEST(Trainer, LearningRateSchedules) {
  auto train = synthetic(320, 1);  // 10 steps per epoch
  auto lrs_for = [&](TrainerOptions o) {
    std::vector<double> lrs;
    DistillTrainer t(small_mlp(3), nullptr, o);
    t.on_step([&](const StepInfo& s) { lrs.push_back(s.lr); });
    t.fit(train);
    return lrs;
  };
  auto cosine = lrs_for(quiet().epochs(2).lr(0.2).schedule("cosine"));
  ASSERT_EQ(cosine.size(), 20u);
  for (size_t i = 0; i < 20; ++i) EXPECT_NEAR(cosine[i], 0.2 * 0.5 * (1 + std::cos(M_PI * i / 20.0)), 1e-12);
  auto warm = lrs_for(quiet().epochs(1).lr(0.2).warmup_steps(4));
  EXPECT_NEAR(warm[0], 0.05, 1e-12);
  EXPECT_NEAR(warm[3], 0.2, 1e-12);
  EXPECT_NEAR(warm[9], 0.2, 1e-12);
  auto step = lrs_for(quiet().epochs(3).lr(0.2).schedule("step").gamma(0.5));
  EXPECT_NEAR(step[9], 0.2, 1e-12);
  EXPECT_NEAR(step[10], 0.1, 1e-12);
  EXPECT_NEAR(step[29], 0.05, 1e-12);
}

TEST(Trainer, GradientClippingBoundsTheUpdate) {
  auto student = small_mlp(3);
  auto before = snapshot(student);
  const double lr = 0.5, clip = 1e-3;
  DistillTrainer t(student, nullptr, quiet().epochs(1).max_steps(1).lr(lr).momentum(0).grad_clip_norm(clip));
  t.fit(synthetic(64, 1));
  double sq = 0;
  auto after = snapshot(student);
  for (size_t i = 0; i < after.size(); ++i) sq += (after[i] - before[i]).pow(2).sum().item<double>();
  EXPECT_GT(std::sqrt(sq), 0.0);
  EXPECT_LE(std::sqrt(sq), lr * clip * 1.001);  // one plain SGD step moves by lr * ||clipped grad||
}

TEST(Trainer, AdamAndAdamWTrain) {
  auto train = synthetic(400, 1), eval = synthetic(200, 2);
  for (const char* opt : {"adam", "adamw"}) {
    DistillTrainer t(small_mlp(3), nullptr, quiet().epochs(5).optimizer(opt).lr(0.01).weight_decay(1e-4));
    EXPECT_GT(t.fit(train, &eval).final_eval.accuracy, 0.85) << opt;
  }
}

TEST(Trainer, MaxStepsStopsMidEpoch) {
  DistillTrainer t(small_mlp(3), nullptr, quiet().epochs(5).max_steps(7));
  auto r = t.fit(synthetic(320, 1), nullptr);
  EXPECT_EQ(r.steps, 7);
}

TEST(Trainer, RefusesBadInputBeforeTraining) {
  auto train = synthetic(100, 1);
  EXPECT_THAT(error_of([&] { DistillTrainer(small_mlp(3, 5), nullptr, quiet()).fit(train); }),
              ::testing::HasSubstr("expected [2, 3]"));
  auto wrong_teacher = std::make_shared<CallableTeacher>([](const torch::Tensor& x) { return torch::zeros({x.size(0), 4}); });
  EXPECT_THAT(error_of([&] { DistillTrainer(small_mlp(3), wrong_teacher, quiet()).fit(train); }),
              ::testing::HasSubstr("the teacher returns"));
  EXPECT_THAT(error_of([&] { DistillTrainer(small_mlp(3), nullptr, quiet()).fit(train.with_label_budget(0)); }),
              ::testing::HasSubstr("nothing to learn from"));
  EXPECT_THAT(error_of([&] { DistillTrainer(small_mlp(3), nullptr, quiet().batch_size(101)).fit(train); }),
              ::testing::HasSubstr("larger than the training set"));
  auto bad = train.features().clone();
  bad[7][2] = std::numeric_limits<float>::infinity();
  data::TensorDataset with_inf(bad, train.targets(), 3);
  EXPECT_THAT(error_of([&] { DistillTrainer(small_mlp(3), nullptr, quiet()).fit(with_inf); }),
              ::testing::HasSubstr("sample 7"));
}

TEST(Trainer, InvalidOptionsNameTheField) {
  auto make = [](TrainerOptions o) { return error_of([&] { DistillTrainer(small_mlp(3), nullptr, o); }); };
  EXPECT_THAT(make(quiet().lr(-1)), ::testing::HasSubstr("lr must be > 0, got -1"));
  EXPECT_THAT(make(quiet().optimizer("rmsprop")), ::testing::HasSubstr("\"rmsprop\""));
  EXPECT_THAT(make(quiet().schedule("linear")), ::testing::HasSubstr("schedule"));
  EXPECT_THAT(make(quiet().epochs(-1)), ::testing::HasSubstr("epochs must be >= 0, got -1"));
  EXPECT_THAT(make(quiet().batch_size(0)), ::testing::HasSubstr("batch_size"));
  EXPECT_THAT(make(quiet().loss(KDLossOptions().temperature(0))), ::testing::HasSubstr("temperature"));
  EXPECT_THAT(make(quiet().loss(KDLossOptions().alpha(2))), ::testing::HasSubstr("alpha"));
  EXPECT_THAT(make(quiet().device("tpu")), ::testing::HasSubstr("\"tpu\""));
  EXPECT_THAT(make(quiet().checkpoint_every(5)), ::testing::HasSubstr("output_dir"));
}

TEST(Trainer, PredictRestoresTrainingMode) {
  auto m = small_mlp(3);
  m.train();
  auto logits = predict(m, synthetic(50, 1), 16);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{50, 3}));
  EXPECT_TRUE(m.is_training());
}

}  // namespace kdistill::test
