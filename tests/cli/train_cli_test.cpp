// Error paths of `kdistill train`, `cache-teacher` and `eval`: exit status and one "error:" line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fixtures/fixtures.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/train/distributed.h"
#include "cli/cli_support.h"

namespace kdistill::test {
namespace {

namespace fs = std::filesystem;

void expect_error(const Output& o, int status, const std::string& needle) {
  EXPECT_EQ(o.status, status) << o.err;
  EXPECT_EQ(o.err.rfind("error: ", 0), 0u) << o.err;
  EXPECT_NE(o.err.find(needle), std::string::npos) << o.err;
  if (status == 1) EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  if (status == 2) EXPECT_NE(o.err.find("usage"), std::string::npos) << o.err;
}

}  // namespace

TEST(TrainCli, UsageErrors) {
  expect_error(cli("train"), 2, "--config or --resume");
  expect_error(cli("train --config a.yaml --resume b"), 2, "excludes");
  expect_error(cli("train --config a.yaml --nproc 0"), 2, "--nproc: must be from 1 to 64");
  expect_error(cli("cache-teacher --teacher t.pt"), 2, "--data");
  expect_error(cli("eval --data x"), 2, "--model");
}

TEST(TrainCli, RuntimeErrorsNameTheProblem) {
  TempDir dir;
  expect_error(cli("train --config " + (dir / "none.yaml")), 1, "none.yaml");
  std::ofstream(dir / "bad.yaml") << "student: {torchscript: s.pt}\noutput: o\ntrain: {lr: fast}\n";
  expect_error(cli("train --config " + (dir / "bad.yaml")), 1, "train.lr: expected a number, got \"fast\"");
  std::ofstream(dir / "typo.yaml") << "student: {torchscript: s.pt}\noutput: o\ntrian: {}\n";
  expect_error(cli("train --config " + (dir / "typo.yaml")), 1, "trian: unknown key");
  expect_error(cli("train --resume " + dir.path()), 1, "not a kdistill run directory");
  std::ofstream(dir / "nodata.yaml") << "data: {path: " << (dir / "empty") << "}\nstudent: {torchscript: s.pt}\noutput: o\n";
  expect_error(cli("train --config " + (dir / "nodata.yaml")), 1, "train-images-idx3-ubyte");
  std::ofstream(dir / "cuda.yaml") << "device: cuda:7\nstudent: {torchscript: s.pt}\noutput: " << (dir / "o") << "\n";
  expect_error(cli("train --config " + (dir / "cuda.yaml")), 1, "cuda:7");
  expect_error(cli("cache-teacher --teacher " + (dir / "t.pt") + " --data hdf5:" + (dir / "x.h5") + " --out " +
                   (dir / "o.h5")),
               1, "x.h5 does not exist");
  expect_error(cli("cache-teacher --teacher t.pt --data csv:foo --out o.h5"), 1, "--data: expected idx:DIR");
  expect_error(cli("eval --model " + (dir / "m.pt") + " --data hdf5:" + (dir / "x.h5") + ":a"), 1,
               "hdf5:FILE:FEATURES:LABELS");
}

TEST(TrainCli, TorchScriptErrorsNameTheFile) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  std::ofstream(dir / "garbage.pt") << "not a zip archive";
  expect_error(cli("eval --model " + (dir / "garbage.pt") + " --data hdf5:" + fx + "/test.h5"), 1,
               "garbage.pt is not a loadable TorchScript archive");
  expect_error(cli("eval --model " + fx + "/student5.pt --data hdf5:" + fx + "/test.h5"), 1,
               "returns shape [200, 5] but the data set has 3 classes");
  auto ok = cli("eval --model " + fx + "/teacher.pt --data hdf5:" + fx + "/test.h5 --teacher " + fx +
                "/teacher.pt --json " + (dir / "e.json"));
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.out.find("agreement 1.0000"), std::string::npos) << ok.out;
}

}  // namespace kdistill::test

namespace kdistill::test {

TEST(TrainCli, EvalOfAnExportedStudentMatchesTheTorchScriptModel) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  auto exported = cli("export --model " + fx + "/teacher.pt --out " + (dir / "t.h5") + " --input-shape 8");
  ASSERT_EQ(exported.status, 0) << exported.err;
  auto ts = cli("eval --model " + fx + "/teacher.pt --data hdf5:" + fx + "/test.h5 --json " + (dir / "ts.json"));
  auto h5 = cli("eval --model " + (dir / "t.h5") + " --data hdf5:" + fx + "/test.h5 --json " + (dir / "h5.json"));
  ASSERT_EQ(ts.status, 0) << ts.err;
  ASSERT_EQ(h5.status, 0) << h5.err;
  // Same predictions, so the same accuracy; NLL equal to float rounding.
  auto a = nlohmann::json::parse(io::read_file(dir / "ts.json")), b = nlohmann::json::parse(io::read_file(dir / "h5.json"));
  EXPECT_EQ(a["accuracy"], b["accuracy"]);
  EXPECT_GT(a["accuracy"].get<double>(), 0.9);
  EXPECT_NEAR(a["nll"].get<double>(), b["nll"].get<double>(), 1e-5);
}

// `kdistill compare` against the same counts made in PyTorch from the two files.
TEST(TrainCli, CompareReportsThePairAndWritesTheReviewList) {
  KDISTILL_REQUIRE_FIXTURES();
  const auto fx = fixtures();
  TempDir dir;
  auto o = cli("compare --a " + fx + "/student.pt --b " + fx + "/teacher.pt --data hdf5:" + fx + "/test.h5 --batch 1 --json " +
               (dir / "c.json") + " --disagreements " + (dir / "d.csv") + " --unsure-below 0.7");
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.out.find("McNemar exact p ="), std::string::npos) << o.out;
  auto py = python("import torch, h5py\n"
                   "f = h5py.File('" + fx + "/test.h5', 'r')\n"
                   "x = torch.tensor(f['x'][:]); y = torch.tensor(f['y'][:])\n"
                   "with torch.no_grad():\n"
                   "    pa = torch.softmax(torch.jit.load('" + fx + "/student.pt')(x), 1)\n"
                   "    pb = torch.softmax(torch.jit.load('" + fx + "/teacher.pt')(x), 1)\n"
                   "ra, rb = pa.argmax(1) == y, pb.argmax(1) == y\n"
                   "review = (pa.argmax(1) != pb.argmax(1)) | (pa.max(1).values < 0.7) | (pb.max(1).values < 0.7)\n"
                   "print(int((ra & ~rb).sum()), int((rb & ~ra).sum()), int(review.sum()), float(rb.double().mean()))\n");
  ASSERT_EQ(py.status, 0) << py.err;
  std::istringstream want(py.out);
  int64_t a_only = 0, b_only = 0, review = 0;
  double b_accuracy = 0;
  want >> a_only >> b_only >> review >> b_accuracy;
  auto j = nlohmann::json::parse(io::read_file(dir / "c.json"));
  EXPECT_EQ(j["n"], 200);
  EXPECT_EQ(j["a_only_correct"], a_only);
  EXPECT_EQ(j["b_only_correct"], b_only);
  EXPECT_NEAR(j["b"]["accuracy"].get<double>(), b_accuracy, 1e-12);
  EXPECT_LT(j["mcnemar_p"].get<double>(), 0.05);  // a trained teacher against an untrained student
  EXPECT_GT(j["ci95"][0].get<double>(), 0.0);
  EXPECT_TRUE(j["a"]["latency_ms"].contains("1"));
  EXPECT_EQ(io::read_lines(dir / "d.csv").size(), static_cast<size_t>(review) + 1);  // and the header
}

TEST(TrainCli, NprocTwoTrainsTheStudentOneProcessTrains) {
  KDISTILL_REQUIRE_FIXTURES();
  if (!ProcessGroup::has_backend("gloo")) GTEST_SKIP() << "built without Gloo's headers (libgloo-dev)";
  const auto fx = fixtures();
  TempDir dir;
  auto write = [&](const std::string& name, const std::string& train_extra) {
    std::ofstream(dir / (name + ".yaml")) << "seed: 3\nthreads: 1\ndata: {format: hdf5, train: " << fx
                                          << "/train.h5, test: " << fx << "/test.h5}\nteacher: {torchscript: " << fx
                                          << "/teacher.pt}\nstudent: {torchscript: " << fx
                                          << "/student.pt}\ntrain: {epochs: 2, batch_size: 32, lr: 0.1" << train_extra
                                          << "}\noutput: " << (dir / name) << "\n";
    return "train --config " + (dir / (name + ".yaml"));
  };
  auto two = cli(write("two", "") + " --nproc 2");
  ASSERT_EQ(two.status, 0) << two.err;
  auto one = cli(write("one", ", micro_batches: 2"));
  ASSERT_EQ(one.status, 0) << one.err;
  // The report is printed once (by rank 0), and each rank's log lines say which rank it is.
  EXPECT_EQ(std::count(two.out.begin(), two.out.end(), '{'), std::count(one.out.begin(), one.out.end(), '{'));
  EXPECT_NE(two.err.find("[kdistill rank 1]"), std::string::npos) << two.err;
  // Two workers with the global batch of 32 split in two: bitwise one process's micro-batches.
  auto py = python("import torch\na = torch.jit.load('" + (dir / "one/student.pt") + "')\nb = torch.jit.load('" +
                   (dir / "two/student.pt") + "')\nprint(all(torch.equal(x, y) for x, y in zip(a.parameters(), "
                   "b.parameters())))\n");
  EXPECT_EQ(py.out, "True\n") << py.err;
  auto m = nlohmann::json::parse(io::read_file(dir / "two/manifest.json"));
  EXPECT_EQ(m["world_size"], 2);
  EXPECT_EQ(m["backend"], "gloo");
  EXPECT_EQ(m["status"], "complete");
  EXPECT_GT(m["metrics"]["distributed"]["allreduce_bytes_per_step"].get<int64_t>(), 0);

  // Started by torchrun (its agent serves the store; the workers are this command): the same.
  if (fs::exists("/usr/bin/torchrun")) {
    // Debian's torchrun 1.13 under Python 3.11 cannot parse its own default `--redirects 0`
    // (Enum iteration changed): name the streams explicitly.
    auto tr = run("/usr/bin/torchrun --redirects 2 --tee 2 --log_dir " + (dir / "torchrun_logs") +
                  " --nproc_per_node 2 --no_python " + KDISTILL_CLI + " " + write("tr", ""));
    ASSERT_EQ(tr.status, 0) << tr.err;
    auto same = python("import torch\na = torch.jit.load('" + (dir / "two/student.pt") + "')\nb = torch.jit.load('" +
                       (dir / "tr/student.pt") + "')\nprint(all(torch.equal(x, y) for x, y in zip(a.parameters(), "
                       "b.parameters())))\n");
    EXPECT_EQ(same.out, "True\n") << same.err;
  } else {
    std::cout << "[  NOTE    ] /usr/bin/torchrun is missing: the torchrun launch was not checked\n";
  }

  // A worker that fails: the command says which, with its error, on one line.
  auto again = cli(write("two", "") + " --nproc 2");
  EXPECT_EQ(again.status, 1) << again.err;
  EXPECT_EQ(std::count(again.err.begin(), again.err.end(), '\n'), 1) << again.err;
  EXPECT_EQ(again.err.rfind("error: worker rank 0 of 2 exited with status 1: output directory", 0), 0u) << again.err;
  EXPECT_NE(again.err.find("already holds a run"), std::string::npos) << again.err;

  // Resumed with 2 workers, the finished run is read back.
  auto resumed = cli("train --resume " + (dir / "two") + " --nproc 2");
  EXPECT_EQ(resumed.status, 0) << resumed.err;
}

}  // namespace kdistill::test
