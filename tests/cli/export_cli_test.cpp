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

// The user story of the graph export: a ResNet written as a Python class, with residual blocks
// and a 1x1 shortcut, exports and serves; an operation the runtime lacks is one error line that
// names it and its source line, exit status 1, and no file.
TEST(ExportCli, AResNetClassExportsAndAnUnsupportedOperationIsOneErrorLine) {
  KDISTILL_REQUIRE_PYTHON_TORCH();
  TempDir dir;
  auto r = python("import torch, torch.nn as nn, torch.nn.functional as F\n"
                  "torch.manual_seed(0)\n"
                  "class Block(nn.Module):\n"
                  "    def __init__(self):\n"
                  "        super().__init__()\n"
                  "        self.conv = nn.Conv2d(4, 8, 3, 2, 1, bias=False)\n"
                  "        self.bn = nn.BatchNorm2d(8)\n"
                  "        self.short = nn.Conv2d(4, 8, 1, 2)\n"
                  "    def forward(self, x):\n"
                  "        return F.relu(self.bn(self.conv(x)) + self.short(x))\n"
                  "class Net(nn.Module):\n"
                  "    def __init__(self):\n"
                  "        super().__init__()\n"
                  "        self.stem = nn.Conv2d(1, 4, 3, padding=1)\n"
                  "        self.block = Block()\n"
                  "        self.fc = nn.Linear(8, 10)\n"
                  "    def forward(self, x):\n"
                  "        x = self.block(F.relu(self.stem(x)))\n"
                  "        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))\n"
                  "class Odd(nn.Module):\n"
                  "    def __init__(self):\n"
                  "        super().__init__()\n"
                  "        self.net = Net()\n"
                  "    def forward(self, x):\n"
                  "        return torch.log_softmax(self.net(x), 1)\n"
                  "torch.jit.script(Net().eval()).save(r'" + dir / "resnet.pt" + "')\n"
                  "torch.jit.script(Odd().eval()).save(r'" + dir / "odd.pt" + "')\n");
  ASSERT_EQ(r.status, 0) << r.err;
  auto o = cli("export --model " + dir / "resnet.pt" + " --out " + dir / "resnet.h5");
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.out.find("Add -> [8, 14, 14] <- "), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("GlobalAvgPool2d -> [8, 1, 1]"), std::string::npos) << o.out;
  EXPECT_EQ(runtime::Model::load(dir / "resnet.h5").num_classes(), 10);

  o = cli("export --model " + dir / "odd.pt" + " --out " + dir / "odd.h5");
  EXPECT_EQ(o.status, 1);
  expect_one_error_line(o, "export_model: aten::log_softmax at ");
  EXPECT_NE(o.err.find("snippet.py:"), std::string::npos) << o.err;
  EXPECT_NE(o.err.find("(`return torch.log_softmax(self.net(x), 1)`) is not supported; supported: "),
            std::string::npos)
      << o.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "odd.h5"));
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
