// Error paths of `kdistill train`, `cache-teacher` and `eval`: exit status and one "error:" line.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fixtures/fixtures.h"
#include "kdistill/io/atomic_file.h"
#include "cli/cli_support.h"

namespace kdistill::test {
namespace {

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
  expect_error(cli("train --config a.yaml --nproc 2"), 2, "not implemented yet");
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

}  // namespace kdistill::test

