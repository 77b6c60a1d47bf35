// The kdistill command: every error path gives the documented exit status and one "error:" line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "kdistill/core/precision.h"
#include "kdistill/data/idx.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/teachers/cache.h"
#include "kdistill/train/distributed.h"
#include "cli/cli_support.h"
#include "fixtures/fixtures.h"

namespace kdistill::test {
namespace {

// A tiny MNIST-family directory: 3 classes whose images differ in brightness, so they are learnable.
void make_tiny_mnist(const std::string& dir, int64_t train_n, int64_t test_n) {
  auto make = [&](int64_t n, const std::string& prefix, uint64_t seed) {
    torch::manual_seed(seed);
    auto labels = torch::randint(0, 3, {n}, torch::kLong);
    auto images = (torch::rand({n, 28, 28}) * 60 + labels.view({n, 1, 1}).to(torch::kFloat) * 80).to(torch::kUInt8);
    data::write_idx(dir + "/" + prefix + "-images-idx3-ubyte.gz", images);
    data::write_idx(dir + "/" + prefix + "-labels-idx1-ubyte.gz", labels.to(torch::kUInt8));
  };
  make(train_n, "train", 1);
  make(test_n, "t10k", 2);
}

}  // namespace

TEST(Cli, VersionTellsVersionsBlasAndCuda) {
  auto o = cli("--version");
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.out.find("kdistill 0.1.0"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("libtorch "), std::string::npos);
  EXPECT_NE(o.out.find("blas "), std::string::npos);
  EXPECT_NE(o.out.find("threads "), std::string::npos);
  EXPECT_NE(o.out.find("cpu bf16 " + kdistill::cpu_bf16_support()), std::string::npos) << o.out;
  // Unless the user chose, the command waits actively in OpenMP (fastest on a machine of its own).
  auto fresh = run("env -u OMP_WAIT_POLICY " + std::string(KDISTILL_CLI) + " --version");
  EXPECT_NE(fresh.out.find("OMP_WAIT_POLICY=active"), std::string::npos) << fresh.out;
  EXPECT_NE(o.out.find(torch::cuda::is_available() ? "cuda available" : "cuda not available"), std::string::npos);
  EXPECT_NE(o.out.find(kdistill::ProcessGroup::has_backend("gloo") ? "distributed gloo" : "distributed none"),
            std::string::npos) << o.out;
  // The BLAS named is the one libblas.so.3 resolves to on this machine.
  auto blas = run("readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3");
  if (blas.status == 0 && !blas.out.empty()) {
    EXPECT_NE(o.out.find(blas.out.substr(0, blas.out.size() - 1)), std::string::npos) << o.out;
  }
}

TEST(Cli, HelpExitsZero) {
  auto o = cli("--help");
  EXPECT_EQ(o.status, 0);
  EXPECT_NE(o.out.find("demo"), std::string::npos);
  EXPECT_EQ(cli("demo --help").status, 0);
}

TEST(Cli, UsageErrorsExitTwoWithAUsageLine) {
  for (const char* args : {"frobnicate", "--nope", "demo --nope", "demo --epochs-teacher 0", "demo --threads x", ""}) {
    auto o = cli(args);
    EXPECT_EQ(o.status, 2) << args << ": " << o.err;
    EXPECT_NE(o.err.find("usage"), std::string::npos) << args << ": " << o.err;
    EXPECT_NE(o.err.find("error:"), std::string::npos) << args << ": " << o.err;
  }
}

TEST(Cli, DemoWithMissingDataSaysWhatWasLookedFor) {
  TempDir dir;
  auto o = cli("demo --data " + dir.path());
  EXPECT_EQ(o.status, 1);
  expect_one_error_line(o, "train-images-idx3-ubyte.gz");
}

TEST(Cli, DemoRefusesBadHyperparametersBeforeTraining) {
  TempDir dir;
  make_tiny_mnist(dir.path(), 200, 20);
  auto t = cli("demo --data " + dir.path() + " --temperature -1");
  EXPECT_EQ(t.status, 1);
  expect_one_error_line(t, "temperature must be > 0, got -1");
  auto a = cli("demo --data " + dir.path() + " --alpha 1.5");
  EXPECT_EQ(a.status, 1);
  expect_one_error_line(a, "alpha must be in [0, 1], got 1.5");
  auto b = cli("demo --data " + dir.path() + " --batch-size 201");
  EXPECT_EQ(b.status, 1);
  expect_one_error_line(b, "batch_size 201 is larger than the training set");
  auto s = cli("demo --data " + dir.path() + " --student rnn:4");
  EXPECT_EQ(s.status, 1);
  expect_one_error_line(s, "rnn:4");
}

TEST(Cli, DemoRefusesAMissingCudaDevice) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a CUDA device is present";
  auto o = cli("demo --device cuda:7");
  EXPECT_EQ(o.status, 1);
  expect_one_error_line(o, "cuda:7 requested but no CUDA device is available");
}

TEST(Cli, DemoRunsEndToEndAndWritesTheReport) {
  TempDir dir;
  make_tiny_mnist(dir.path(), 300, 100);
  const std::string report = dir / "report.json";
  auto o = cli("demo --data " + dir.path() +
               " --teacher mlp:32 --student mlp:8 --epochs-teacher 2 --epochs-student 2 --labels 50"
               " --batch-size 32 --temperature 3 --alpha 0.8 --bench-seconds 0.01 --report " + report);
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.out.find("| model |"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("distillation vs labels alone"), std::string::npos);
  auto j = nlohmann::json::parse(io::read_file(report));
  EXPECT_EQ(j["dataset"]["labeled"], 50);
  EXPECT_EQ(j["dataset"]["train"], 300);
  EXPECT_EQ(j["dataset"]["test"], 100);
  EXPECT_EQ(j["kd"]["temperature"], 3.0);
  EXPECT_EQ(j["kd"]["alpha"], 0.8);
  EXPECT_EQ(j["models"]["teacher"]["params"], 784 * 32 + 32 + 32 * 3 + 3);
  EXPECT_EQ(j["models"]["student_kd"]["params"], 784 * 8 + 8 + 8 * 3 + 3);
  for (const char* m : {"teacher", "student_scratch", "student_kd"}) {
    EXPECT_GE(j["models"][m]["accuracy"].get<double>(), 0.0) << m;
    EXPECT_LE(j["models"][m]["accuracy"].get<double>(), 1.0) << m;
    EXPECT_TRUE(j["models"][m]["latency_ms"].contains("1")) << m;
    EXPECT_TRUE(j["models"][m]["latency_ms"].contains("256")) << m;
    EXPECT_GT(j["models"][m]["train_samples_per_s"].get<double>(), 0.0) << m;
  }
  EXPECT_TRUE(j["models"]["student_kd"].contains("agreement"));

  // A failing run leaves the earlier report untouched.
  const auto before = io::read_file(report);
  auto bad = cli("demo --data " + dir.path() + " --alpha 7 --report " + report);
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(io::read_file(report), before);
}

// `--offline` distils from the teacher's logits computed once: with the same saved teacher it
// trains the same students as a live teacher (up to rounding: the logits come from other batch
// sizes), and reports the distilled student's agreement, which the trainer cannot measure from a
// cache.
TEST(Cli, DemoOfflineDistilsWhatTheLiveTeacherDoes) {
  TempDir dir;
  make_tiny_mnist(dir.path(), 300, 100);
  const std::string base = "demo --data " + dir.path() +
                           " --teacher mlp:32 --student mlp:8 --epochs-teacher 2 --epochs-student 3 --labels 30"
                           " --batch-size 32 --temperature 2 --alpha 0.9 --bench-seconds 0.01 --batch 1"
                           " --teacher-weights " + (dir / "teacher.pt");
  auto live = cli(base + " --report " + (dir / "live.json"));
  ASSERT_EQ(live.status, 0) << live.err;
  auto offline = cli(base + " --offline --report " + (dir / "offline.json"));
  ASSERT_EQ(offline.status, 0) << offline.err;
  EXPECT_NE(offline.err.find("--offline: the teacher's logits for 300 images computed once"), std::string::npos)
      << offline.err;
  auto l = nlohmann::json::parse(io::read_file(dir / "live.json"))["models"];
  auto f = nlohmann::json::parse(io::read_file(dir / "offline.json"))["models"];
  EXPECT_EQ(f["teacher"]["accuracy"], l["teacher"]["accuracy"]);
  EXPECT_EQ(f["student_scratch"]["accuracy"], l["student_scratch"]["accuracy"]);
  // 270 of the 300 images carry only the teacher's targets (the row mapping itself is tested in
  // TeacherCache.InMemoryLogitsServeRowsByIndex); here both runs land within 2 test images.
  EXPECT_NEAR(f["student_kd"]["accuracy"].get<double>(), l["student_kd"]["accuracy"].get<double>(), 0.021);
  EXPECT_NEAR(f["student_kd"]["agreement"].get<double>(), l["student_kd"]["agreement"].get<double>(), 0.021);
}

}  // namespace kdistill::test

namespace kdistill::test {

// `kdistill bench` end to end on two small TorchScript MLPs: the table on stdout, the JSON report,
// --optimize naming both models "(optimized)", and a bad --runtimes failing with exit status 1.
TEST(Cli, BenchMeasuresTwoTorchScriptModelsAndOptimizesThemOnRequest) {
  KDISTILL_REQUIRE_PYTHON_TORCH();
  TempDir dir;
  auto py = python("import torch, torch.nn as nn\n"
                   "torch.manual_seed(0)\n"
                   "torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 3)))"
                   ".save(r'" + (dir / "t.pt") + "')\n"
                   "torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)))"
                   ".save(r'" + (dir / "s.pt") + "')\n");
  ASSERT_EQ(py.status, 0) << py.err;
  const std::string common = "bench --teacher " + (dir / "t.pt") + " --student " + (dir / "s.pt") +
                             " --input-shape 1,4,4 --batch 1,4 --iters 20 --min-seconds 0.01 --threads 1";
  auto plain = cli(common + " --json " + (dir / "plain.json"));
  ASSERT_EQ(plain.status, 0) << plain.err;
  EXPECT_THAT(plain.out, ::testing::HasSubstr("s.pt")) << plain.out;
  auto optimized = cli(common + " --optimize --runtimes torch --json " + (dir / "opt.json"));
  ASSERT_EQ(optimized.status, 0) << optimized.err;
  const auto report = nlohmann::json::parse(io::read_file(dir / "opt.json"));
  EXPECT_EQ(report["models"]["teacher"]["arch"], "t.pt (optimized)") << report.dump();
  EXPECT_EQ(report["models"]["student"]["arch"], "s.pt (optimized)") << report.dump();
  EXPECT_FALSE(report["models"].contains("student_eigen")) << report.dump();  // --runtimes torch
  EXPECT_GT(report["models"]["student"]["latency_ms"]["4"]["p50"].get<double>(), 0.0) << report.dump();
  EXPECT_EQ(report["models"]["student"]["params"], 16 * 8 + 8 + 8 * 3 + 3) << report.dump();  // not 0
  auto bad = cli(common + " --runtimes onnx");
  EXPECT_EQ(bad.status, 1);
  expect_one_error_line(bad, "--runtimes: expected a comma-separated subset of torch,eigen");
  auto mixed = cli(common + " --optimize --runtimes torch,eigen");
  EXPECT_EQ(mixed.status, 1);
  expect_one_error_line(mixed, "--optimize measures LibTorch models only");
}

// bf16 serving: both models measured in bf16, and with --data each one's accuracy also in fp32
// and its bf16-fp32 agreement; the cache-teacher command stores float32 logits from a bf16 teacher
// that agree with the fp32 teacher's.
TEST(Cli, BenchAndCacheTeacherInBf16) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  auto o = cli("bench --teacher " + fx + "/teacher.pt --student " + fx + "/student.pt --input-shape 8 --batch 1,4 "
               "--iters 20 --min-seconds 0.01 --threads 1 --runtimes torch --precision bf16 --data hdf5:" + fx +
               "/test.h5 --json " + (dir / "bf16.json"));
  ASSERT_EQ(o.status, 0) << o.err;
  auto report = nlohmann::json::parse(io::read_file(dir / "bf16.json"));
  EXPECT_EQ(report["precision"], "bf16");
  for (const char* m : {"teacher", "student"}) {
    const auto& e = report["models"][m];
    ASSERT_TRUE(e.contains("accuracy_fp32") && e.contains("agreement_with_fp32")) << report.dump();
    EXPECT_GT(e["agreement_with_fp32"].get<double>(), 0.95) << m;
    EXPECT_NEAR(e["accuracy"].get<double>(), e["accuracy_fp32"].get<double>(), 0.05) << m;
  }
  for (const char* p : {"fp32", "bf16"}) {
    auto c = cli("cache-teacher --teacher " + fx + "/teacher.pt --data hdf5:" + fx + "/test.h5 --out " +
                 (dir / (std::string(p) + ".h5")) + " --precision " + p);
    ASSERT_EQ(c.status, 0) << c.err;
    // The command times what the precision changes: "cached N samples in S s (R samples/s)".
    std::smatch m;
    ASSERT_TRUE(std::regex_search(c.out, m, std::regex(R"(cached (\d+) samples in ([0-9.]+) s \((\d+) samples/s\))")))
        << c.out;
    const double n = std::stod(m[1]), seconds = std::stod(m[2]), rate = std::stod(m[3]);
    EXPECT_EQ(n, CachedTeacher(dir / (std::string(p) + ".h5")).info().samples) << c.out;
    // Seconds are printed to 2 decimals, so the true time lies within 0.005 s of the printed one and
    // the rate (rounded to a whole number) must lie between n over the two ends of that interval.
    if (seconds > 0.005) {
      EXPECT_GE(rate, n / (seconds + 0.005) - 0.5) << c.out;
      EXPECT_LE(rate, n / (seconds - 0.005) + 0.5) << c.out;
    }
  }
  auto a = CachedTeacher(dir / "fp32.h5").all(), b = CachedTeacher(dir / "bf16.h5").all();
  EXPECT_EQ(b.scalar_type(), torch::kFloat);
  EXPECT_FALSE(a.equal(b));  // it did compute in bf16
  EXPECT_GT((a.argmax(1) == b.argmax(1)).to(torch::kDouble).mean().item<double>(), 0.97);
}

}  // namespace kdistill::test
