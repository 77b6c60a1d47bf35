#include "kdistill/train/run.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "fixtures/fixtures.h"
#include "kdistill/core/error.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/io/sha256.h"
#include "kdistill/metrics/evaluate.h"
#include "kdistill/models/model.h"
#include "support.h"

namespace kdistill::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string config_text(const std::string& fx, const std::string& out, const std::string& teacher) {
  return "seed: 3\nthreads: 1\n"
         "data: {format: hdf5, train: " + fx + "/train.h5, test: " + fx + "/test.h5}\n" + teacher +
         "student: {torchscript: " + fx + "/student.pt}\n"
         "loss: {kind: kd, temperature: 2.0, alpha: 0.7}\n"
         "train: {epochs: 4, batch_size: 32, lr: 0.1, schedule: cosine, checkpoint_every: 10, log_every: 5}\n"
         "output: " + out + "\n";
}

std::vector<torch::Tensor> weights(const std::string& path) {
  auto m = Model::load_torchscript(path);
  std::vector<torch::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.detach().clone());
  return out;
}

}  // namespace

TEST(Run, WritesEveryOutputAndATraceableManifest) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  const auto out = dir / "run";
  auto cfg = parse_config(config_text(fx, out, "teacher: {torchscript: " + fx + "/teacher.pt}\n"), "run.yaml", dir.path());
  auto result = run_config(cfg);
  for (const char* f : {"config.yaml", "student_init.pt", "student.pt", "metrics.jsonl", "report.json", "manifest.json",
                        "checkpoints/last.pt"}) {
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;
  }
  EXPECT_GT(result.train.final_eval.accuracy, 0.85);
  auto m = nlohmann::json::parse(io::read_file(out + "/manifest.json"));
  EXPECT_EQ(m["status"], "complete");
  EXPECT_EQ(m["seed"], 3);
  EXPECT_EQ(m["config"]["train"]["lr"], 0.1);
  EXPECT_TRUE(m.contains("start_time") && m.contains("end_time"));
  EXPECT_EQ(m["metrics"]["student"]["accuracy"], result.train.final_eval.accuracy);
  // The recorded hashes are the files' SHA-256 as sha256sum computes them.
  auto sum = [](const std::string& p) { return run("sha256sum " + p).out.substr(0, 64); };
  EXPECT_EQ(m["files"]["teacher"]["sha256"], sum(fx + "/teacher.pt"));
  EXPECT_EQ(m["files"]["student"]["sha256"], sum(fx + "/student.pt"));
  EXPECT_EQ(m["files"]["data"][fx + "/train.h5"], sum(fx + "/train.h5"));
  auto report = nlohmann::json::parse(result.report_json);
  EXPECT_EQ(report["models"]["student_kd"]["params"], 8 * 16 + 16 + 16 * 3 + 3);
  EXPECT_GT(report["models"]["teacher"]["accuracy"].get<double>(), 0.9);

  // The saved student gives Python the logits it gives C++.
  auto student = Model::load_torchscript(out + "/student.pt");
  auto x = torch::linspace(-2, 2, 24).view({3, 8});
  auto cpp = student.forward(x).contiguous();
  auto py = python("import torch\nm = torch.jit.load('" + out + "/student.pt')\n"
                   "x = torch.linspace(-2, 2, 24).view(3, 8)\nprint(' '.join(repr(v) for v in m(x).flatten().tolist()))\n");
  ASSERT_EQ(py.status, 0) << py.err;
  std::istringstream in(py.out);
  for (int64_t i = 0; i < cpp.numel(); ++i) {
    double v;
    in >> v;
    EXPECT_NEAR(v, cpp.view(-1)[i].item<double>(), 1e-6);
  }

  // A second run into the same directory is refused and leaves everything as it was.
  const auto before = io::read_file(out + "/report.json");
  EXPECT_THAT(error_of([&] { run_config(cfg); }), HasSubstr("already holds a run"));
  EXPECT_EQ(io::read_file(out + "/report.json"), before);
  // Resuming a finished run changes nothing.
  auto w = weights(out + "/student.pt");
  resume_run(out);
  EXPECT_TRUE(same(w, weights(out + "/student.pt")));
}

TEST(Run, CacheTeacherRunEqualsLiveTeacherRun) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  auto live = run_config(parse_config(config_text(fx, dir / "live", "teacher: {torchscript: " + fx + "/teacher.pt}\n"),
                                      "run.yaml", dir.path()));
  auto r = run(std::string(KDISTILL_CLI) + " cache-teacher --teacher " + fx + "/teacher.pt --data hdf5:" + fx +
               "/train.h5 --out " + (dir / "logits.h5"));
  ASSERT_EQ(r.status, 0) << r.err;
  auto cached = run_config(parse_config(config_text(fx, dir / "cached", "teacher: {cache: " + (dir / "logits.h5") + "}\n"),
                                        "run.yaml", dir.path()));
  // Equal up to the float rounding between batched and live teacher logits.
  auto a = weights(dir / "live/student.pt"), b = weights(dir / "cached/student.pt");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-3, 1e-4)) << i;
  EXPECT_NEAR(cached.train.final_eval.accuracy, live.train.final_eval.accuracy, 0.011);
}

TEST(Run, RefusesMismatchesBeforeTraining) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  // A student with 5 outputs for 3 classes.
  auto text = config_text(fx, dir / "five", "teacher: {torchscript: " + fx + "/teacher.pt}\n");
  text.replace(text.find("student.pt"), 10, "student5.pt");
  auto msg = error_of([&] { run_config(parse_config(text, "run.yaml", dir.path())); });
  EXPECT_NE(msg.find("the student returns shape [2, 5]"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir / "five/student.pt"));
  auto m = nlohmann::json::parse(io::read_file(dir / "five/manifest.json"));
  EXPECT_EQ(m["status"], "failed");
  // A cache made for other data.
  auto probs = config_text(fx, dir / "p", "teacher: {cache: " + fx + "/probs.h5}\n");
  probs.replace(probs.find("train.h5"), 8, "test.h5");
  msg = error_of([&] { run_config(parse_config(probs, "run.yaml", dir.path())); });
  EXPECT_NE(msg.find("400 samples but the training set has 200"), std::string::npos) << msg;
  // A missing student file.
  auto missing = config_text(fx, dir / "m", "");
  missing.replace(missing.find("student.pt"), 10, "nothere.pt");
  msg = error_of([&] { run_config(parse_config(missing, "run.yaml", dir.path())); });
  EXPECT_NE(msg.find("nothere.pt does not exist"), std::string::npos) << msg;
}

// Without a teacher, data.labeled keeps the labelled samples alone: the run is the same, batch for
// batch, as one on a file holding just those samples. With a teacher the rest stays a transfer set.
TEST(Run, LabelsOnlyBaselineTrainsOnTheLabelledSamplesAlone) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  auto budget = config_text(fx, dir / "budget", "");
  budget.replace(budget.find("/test.h5}"), 9, "/test.h5, labeled: 100}");
  auto with_budget = run_config(parse_config(budget, "run.yaml", dir.path()));
  EXPECT_EQ(with_budget.train.steps, 4 * 4);  // 4 epochs of ceil(100 / 32) batches
  auto report = nlohmann::json::parse(with_budget.report_json);
  EXPECT_EQ(report["dataset"]["train"], 100);
  EXPECT_EQ(report["dataset"]["labeled"], 100);

  data::save_hdf5(data::load_hdf5(fx + "/train.h5", "x", "y").slice(0, 100), dir / "first100.h5");
  auto subset = config_text(fx, dir / "subset", "");
  subset.replace(subset.find(fx + "/train.h5"), fx.size() + 9, dir / "first100.h5");
  run_config(parse_config(subset, "run.yaml", dir.path()));
  auto a = weights(dir / "budget/student.pt"), b = weights(dir / "subset/student.pt");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;

  auto distil = config_text(fx, dir / "distil", "teacher: {cache: " + fx + "/probs.h5}\n");
  distil.replace(distil.find("/test.h5}"), 9, "/test.h5, labeled: 100}");
  auto distilled = run_config(parse_config(distil, "run.yaml", dir.path()));
  EXPECT_EQ(distilled.train.steps, 4 * 13);  // all 400 samples: ceil(400 / 32) batches
  report = nlohmann::json::parse(distilled.report_json);
  EXPECT_EQ(report["dataset"]["train"], 400);
  EXPECT_EQ(report["dataset"]["labeled"], 100);
}

TEST(Run, ProbabilityOnlyTeacherDistils) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  auto r = run_config(parse_config(config_text(fx, dir / "p", "teacher: {cache: " + fx + "/probs.h5}\n"), "run.yaml",
                                   dir.path()));
  EXPECT_GT(r.train.final_eval.accuracy, 0.85);
}

TEST(Run, KilledCommandResumesToTheSameStudent) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  auto write = [&](const std::string& name, const std::string& out) {
    auto text = config_text(fx, out, "teacher: {torchscript: " + fx + "/teacher.pt}\n");
    text.replace(text.find("epochs: 4"), 9, "epochs: 40");
    std::ofstream(dir / name) << text;
  };
  write("ref.yaml", dir / "ref");
  write("killed.yaml", dir / "killed");
  const std::string cli = KDISTILL_CLI;
  ASSERT_EQ(run(cli + " train --config " + (dir / "ref.yaml")).status, 0);
  // SIGKILL at an arbitrary moment once the run exists (its config.yaml is written): wherever it
  // lands, the resumed result must be identical.
  auto killed = run(cli + " train --config " + (dir / "killed.yaml") + " & pid=$!; " +
                    "for i in $(seq 600); do [ -e " + (dir / "killed/config.yaml") + " ] && break; sleep 0.05; done; " +
                    "sleep 0.$(( $(od -An -N1 -tu1 /dev/urandom) % 9 + 1 )); kill -9 $pid; wait $pid");
  EXPECT_TRUE(killed.status == 128 + 9 || killed.status == 0) << killed.status << killed.err;
  auto resumed = run(cli + " train --resume " + (dir / "killed"));
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_TRUE(same(weights(dir / "ref/student.pt"), weights(dir / "killed/student.pt")));
}

// The list form of loss: with a feature objective, an ensemble teacher of a live model and a
// cache, each term named in metrics.jsonl, and the hint adapter left out of student.pt.
TEST(Run, WeightedObjectivesWithAHintAndAnEnsembleTeacher) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  const auto out = dir / "run";
  const std::string cache = dir / "probs_teacher.h5";
  std::string text = config_text(fx, out, "teacher: {ensemble: [{torchscript: " + fx + "/teacher.pt, weight: 3}, {cache: " +
                                              fx + "/probs.h5}]}\n");
  text.replace(text.find("loss: {kind: kd, temperature: 2.0, alpha: 0.7}"), 46,
               "loss: [{kind: kd, weight: 0.8, temperature: 2}, {kind: ce, weight: 0.2}]");
  auto result = run_config(parse_config(text, "run.yaml", dir.path()));
  EXPECT_GT(result.train.final_eval.accuracy, 0.85);
  EXPECT_EQ(result.train.teacher_accuracy, -1);  // a cache member: the ensemble cannot score new inputs
  auto first = nlohmann::json::parse(io::read_lines(out + "/metrics.jsonl").front());
  EXPECT_EQ(first["terms"].size(), 2u);
  EXPECT_TRUE(first["terms"].contains("kd") && first["terms"].contains("ce")) << first.dump();
  auto report = nlohmann::json::parse(result.report_json);
  EXPECT_EQ(report["kd"]["temperature"], 2.0);

  // A hint between the hidden layers of the live teacher and the student (16 -> 32, linear adapter).
  const auto out2 = dir / "hint";
  std::string hint = config_text(fx, out2, "teacher: {torchscript: " + fx + "/teacher.pt}\n");
  hint.replace(hint.find("loss: {kind: kd, temperature: 2.0, alpha: 0.7}"), 46,
               "loss: [{kind: kd, temperature: 2, alpha: 0.7}, {kind: hint, weight: 0.1, student: '1', teacher: '1', "
               "adapter: linear}]");
  auto r2 = run_config(parse_config(hint, "run.yaml", dir.path()));
  EXPECT_GT(r2.train.final_eval.accuracy, 0.85);
  auto line = nlohmann::json::parse(io::read_lines(out2 + "/metrics.jsonl").front());
  EXPECT_TRUE(line["terms"].contains("kd.kd") && line["terms"].contains("kd.ce") && line["terms"].contains("hint"))
      << line.dump();
  EXPECT_EQ(Model::load_torchscript(out2 + "/student.pt").num_parameters(), 8 * 16 + 16 + 16 * 3 + 3);

  // A tap the student does not have is an error naming the key path and the taps that exist.
  std::string bad = hint;
  bad.replace(bad.find("student: '1'"), 12, "student: '7'");
  bad.replace(bad.find(out2), out2.size(), dir / "bad");
  EXPECT_THAT(error_of([&] { run_config(parse_config(bad, "run.yaml", dir.path())); }),
              HasSubstr("loss[1].student: '7' is not a feature of the student; its features: 0, 1, 2"));
}

// Born-again distillation: generation 2 learns from generation 1's student; the output directory
// reports every generation and holds the last student.
TEST(Run, GenerationsTrainEachStudentFromThePreviousOne) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  const auto out = dir / "ban";
  auto text = config_text(fx, out, "teacher: {torchscript: " + fx + "/teacher.pt}\n") + "generations: 2\n";
  auto result = run_config(parse_config(text, "run.yaml", dir.path()));
  ASSERT_EQ(result.generations.size(), 2u);
  auto report = nlohmann::json::parse(io::read_file(out + "/report.json"));
  ASSERT_TRUE(report["models"].contains("teacher") && report["models"].contains("student_gen1") &&
              report["models"].contains("student_gen2"))
      << report.dump();
  EXPECT_EQ(report["models"]["student_gen2"]["accuracy"].get<double>(), result.generations[1].final_eval.accuracy);
  EXPECT_GT(result.generations[1].final_eval.accuracy, 0.85);
  // Generation 2's teacher is generation 1's student, by path and by content.
  auto m2 = nlohmann::json::parse(io::read_file(out + "/generation_2/manifest.json"));
  EXPECT_EQ(m2["files"]["teacher"]["path"], out + "/generation_1/student.pt");
  EXPECT_EQ(m2["files"]["teacher"]["sha256"], io::sha256_file(out + "/generation_1/student.pt"));
  EXPECT_EQ(io::read_file(out + "/student.pt"), io::read_file(out + "/generation_2/student.pt"));
  EXPECT_NE(io::read_file(out + "/generation_1/student.pt"), io::read_file(out + "/generation_2/student.pt"));
  // Generation 2's teacher accuracy is generation 1's student accuracy on the same test set.
  EXPECT_NEAR(result.generations[1].teacher_accuracy, result.generations[0].final_eval.accuracy, 1e-12);
  // Resuming the finished run reads every generation back: no file changes, the results are the same.
  std::map<std::string, std::string> before;
  for (const auto& entry : fs::recursive_directory_iterator(out)) {
    if (entry.is_regular_file()) before[entry.path().string()] = io::read_file(entry.path().string());
  }
  auto again = resume_run(out);
  ASSERT_EQ(again.generations.size(), 2u);
  EXPECT_EQ(again.generations[1].final_eval.accuracy, result.generations[1].final_eval.accuracy);
  EXPECT_EQ(again.generations[0].train_samples_per_s, result.generations[0].train_samples_per_s);
  for (const auto& [path, bytes] : before) {
    if (fs::path(path).filename() == "manifest.json" && fs::path(path).parent_path() == fs::path(out)) continue;
    EXPECT_EQ(io::read_file(path), bytes) << path;
  }
  EXPECT_THROW(run_config(parse_config(text, "run.yaml", dir.path())), Error);
}

// data.validation holds out the last training samples as the evaluation set; a logit cache made
// for the whole training file serves its first rows.
TEST(Run, ValidationHoldsOutTheLastTrainingSamples) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  const auto out = dir / "val";
  auto text = config_text(fx, out, "teacher: {cache: " + fx + "/probs.h5}\n");
  text.replace(text.find("/test.h5}"), 9, "/test.h5, validation: 100}");
  auto result = run_config(parse_config(text, "run.yaml", dir.path()));
  auto report = nlohmann::json::parse(result.report_json);
  EXPECT_EQ(report["dataset"]["train"], 300);
  EXPECT_EQ(report["dataset"]["test"], 100);
  EXPECT_EQ(result.train.final_eval.samples, 100);
  // The reported accuracy is the student's on the last 100 rows of train.h5, sliced by hand.
  auto held_out = data::load_hdf5(fx + "/train.h5", "x", "y").slice(300, 400);
  auto student = Model::load_torchscript(out + "/student.pt");
  EXPECT_DOUBLE_EQ(metrics::accuracy(predict(student, held_out), held_out.targets()), result.train.final_eval.accuracy);
  std::string bad = text;
  bad.replace(bad.find("validation: 100"), 15, "validation: 400");
  bad.replace(bad.find(out), out.size(), dir / "bad");
  EXPECT_THAT(error_of([&] { run_config(parse_config(bad, "run.yaml", dir.path())); }),
              HasSubstr("data.validation: 400 must be below the training set size 400"));
}

// The method kinds run from a config: DKD with mdistiller's warm-up, a divergence with an annealed
// temperature, and attention transfer refused on features that are not images.
TEST(Run, MethodKindsTrainFromAConfig) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  const auto out = dir / "dkd";
  auto text = config_text(fx, out, "teacher: {torchscript: " + fx + "/teacher.pt}\n");
  text.replace(text.find("loss: {kind: kd, temperature: 2.0, alpha: 0.7}"), 46,
               "loss: [{kind: dkd, beta: 2, weight: {schedule: linear, start: 0, end: 1, epochs: 2}}, {kind: ce},\n"
               "       {kind: jsd, beta: 0.9, weight: 0.5, temperature: {schedule: cosine, start: 4, end: 1}}]");
  auto result = run_config(parse_config(text, "run.yaml", dir.path()));
  EXPECT_GT(result.train.final_eval.accuracy, 0.85);
  auto first = nlohmann::json::parse(io::read_lines(out + "/metrics.jsonl").front());
  for (const char* term : {"dkd.tckd", "dkd.nckd", "ce", "jsd"}) EXPECT_TRUE(first["terms"].contains(term)) << first.dump();
  const auto out2 = dir / "at";
  auto at = config_text(fx, out2, "teacher: {torchscript: " + fx + "/teacher.pt}\n");
  at.replace(at.find("loss: {kind: kd, temperature: 2.0, alpha: 0.7}"), 46, "loss: {kind: at, student: '1', teacher: '1'}");
  EXPECT_THAT(error_of([&] { run_config(parse_config(at, "run.yaml", dir.path())); }),
              HasSubstr("loss[0]: attention transfer needs [B, C, H, W] features; '1' of the student is [1, 16]"));
}

}  // namespace kdistill::test

