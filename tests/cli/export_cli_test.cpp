// `kdistill export`: a TorchScript student from Python becomes a file the Eigen runtime serves
// with the same logits; bad input gives the documented exit statuses and one "error:" line.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "kdistill/models/model.h"
#include "kdistill/runtime/runtime.h"
#include "cli/cli_support.h"

namespace kdistill::test {
namespace {

}  // namespace

TEST(ExportCli, WritesAFileTheRuntimeServesWithTheSameLogits) {
  KDISTILL_REQUIRE_PYTHON_TORCH();
  TempDir dir;
  const std::string student = dir / "student.pt", out = dir / "student.h5";
  auto r = python("import torch, torch.nn as nn\n"
                  "torch.manual_seed(0)\n"
                  "m = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.BatchNorm1d(16), nn.ReLU(),\n"
                  "                  nn.Linear(16, 10))\n"
                  "with torch.no_grad():\n"
                  "    m[2].running_mean.uniform_(-1, 1)\n"
                  "    m[2].running_var.uniform_(0.5, 2)\n"
                  "torch.jit.script(m.eval()).save(r'" + student + "')\n");
  ASSERT_EQ(r.status, 0) << r.err;

  auto o = cli("export --model " + student + " --out " + out + " --input-shape 1,28,28 --mean 0.25 --std 0.5");
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.out.find("exported " + student + " to " + out), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("Linear 784->16"), std::string::npos) << o.out;

  const auto served = runtime::Model::load(out);
  EXPECT_EQ(served.input_shape(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(served.num_classes(), 10);
  EXPECT_EQ(served.mean(), 0.25);
  EXPECT_EQ(served.stddev(), 0.5);
  auto model = Model::load_torchscript(student);
  torch::manual_seed(1);
  const auto x = torch::rand({3, 1, 28, 28});
  torch::Tensor ref;
  {
    torch::NoGradGuard no_grad;
    ref = model.forward((x - 0.25f) / 0.5f);
  }
  auto got = torch::empty({3, 10});
  served.predict(x.data_ptr<float>(), 3, got.data_ptr<float>());
  EXPECT_LE((got - ref).abs().max().item<double>(), 1e-5 * std::max(1.0, ref.abs().max().item<double>()));
}

TEST(ExportCli, UsageErrorsExitTwo) {
  TempDir dir;
  const std::vector<std::string> usage_errors = {"export --out " + dir / "s.h5", "export --model x.pt",
                                                 "export --model x.pt --out y.h5 --input-shape 1,x,28",
                                                 "export --model x.pt --out y.h5 --std 0"};
  for (const auto& args : usage_errors) {
    auto o = cli(args);
    EXPECT_EQ(o.status, 2) << args << ": " << o.err;
    EXPECT_NE(o.err.find("usage"), std::string::npos) << args << ": " << o.err;
  }
  EXPECT_EQ(cli("export --help").status, 0);
}

TEST(ExportCli, MissingModelIsOneErrorLineNamingIt) {
  TempDir dir;
  const std::string missing = dir / "absent.pt";
  auto o = cli("export --model " + missing + " --out " + dir / "s.h5");
  EXPECT_EQ(o.status, 1);
  expect_one_error_line(o, missing);
  EXPECT_FALSE(std::filesystem::exists(dir / "s.h5"));
}

}  // namespace kdistill::test
