// Tests for kdistill/export/export.h: the file h5py reads, TorchScript models from Python
// (scripted and traced), and every refusal naming the layer and the problem.

#include "kdistill/export/export.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/models/builders.h"
#include "kdistill/models/model.h"
#include "kdistill/runtime/runtime.h"
#include "support.h"

namespace kdistill::test {
namespace {

namespace nn = torch::nn;
using ::testing::HasSubstr;

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Exports `model` and compares the runtime with the model's own eval-mode forward on random
// inputs: max |diff| <= 1e-5 * max(1, max |ref|).
void expect_parity(Model model, const std::vector<int64_t>& shape) {
  TempDir dir;
  ExportOptions options;
  options.input_shape(shape);
  model.eval();
  export_model(model, dir / "model.h5", options);
  const auto rt = runtime::Model::load(dir / "model.h5");
  std::vector<int64_t> dims{6};
  dims.insert(dims.end(), shape.begin(), shape.end());
  torch::manual_seed(5);
  const auto x = torch::rand(dims);
  torch::Tensor ref;
  {
    torch::NoGradGuard no_grad;
    ref = model.forward(x);
  }
  ASSERT_EQ(ref.size(1), rt.num_classes());
  auto got = torch::empty_like(ref);
  rt.predict(x.data_ptr<float>(), 6, got.data_ptr<float>());
  const double scale = std::max(1.0, ref.abs().max().item<double>());
  EXPECT_LE((got - ref).abs().max().item<double>(), 1e-5 * scale) << rt.describe();
}

// Python fixtures: TorchScript students with non-trivial BatchNorm statistics, in eval mode.
constexpr const char* kPyModels = R"(
import torch, torch.nn as nn
torch.manual_seed(0)
def randomize(m):
    for x in m.modules():
        if isinstance(x, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                x.running_mean.copy_(torch.randn_like(x.running_mean) * 0.5)
                x.running_var.copy_(torch.rand_like(x.running_var) * 2 + 0.25)
                x.weight.copy_(torch.randn_like(x.weight))
                x.bias.copy_(torch.randn_like(x.bias))
    return m.eval()
mlp = randomize(nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1),
                              nn.Linear(32, 10)))
torch.jit.script(mlp).save(d + '/mlp_script.pt')
torch.jit.trace(mlp, torch.zeros(1, 1, 28, 28)).save(d + '/mlp_trace.pt')
# 28x28 -conv s2 p1-> 14x14 -max 2-> 7x7 -conv same-> 7x7 -avg 2 s1-> 6x6
cnn = randomize(nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.GELU(),
                              nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding='same', bias=False), nn.Tanh(),
                              nn.AvgPool2d(2, stride=1), nn.Flatten(), nn.Linear(6 * 6 * 6, 5)))
torch.jit.script(cnn).save(d + '/cnn_script.pt')
torch.jit.trace(cnn, torch.zeros(1, 1, 28, 28)).save(d + '/cnn_trace.pt')
nested = randomize(nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(12, 8), nn.BatchNorm1d(8), nn.Sigmoid()),
                                 nn.Linear(8, 3), nn.GELU(approximate='tanh'), nn.Linear(3, 3)))
torch.jit.script(nested).save(d + '/nested.pt')
torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.Softmax(dim=1))).save(d + '/softmax.pt')
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
    def forward(self, x):
        return self.fc(x) * 2
torch.jit.script(Net()).save(d + '/custom.pt')
)";

}  // namespace

TEST(Export, WritesTheDocumentedLayoutReadByH5py) {
  if (!have_python_module("h5py")) GTEST_SKIP() << "python3-h5py is not installed (" KDISTILL_PYTHON "): skipped";
  torch::manual_seed(0);
  TempDir dir;
  const std::string path = dir / "cnn.h5";
  auto net = cnn({1, 28, 28}, {8, 16}, 10);
  ExportOptions options;
  options.input_shape({1, 28, 28});
  options.mean(0.5);
  options.std(0.25);
  export_model(Model(net, "cnn:8,16"), path, options);
  auto r = python("import h5py, numpy as np\n"
                  "f = h5py.File(r'" + path + "', 'r')\n"
                  "a = f.attrs\n"
                  "ints = lambda v: [int(x) for x in np.atleast_1d(v)]\n"
                  "print(a['format'], a['arch'], ints(a['input_shape']), int(a['num_classes']), float(a['mean']),"
                  " float(a['std']), a['num_classes'].dtype, a['mean'].dtype)\n"
                  "L = f['layers']\n"
                  "for i in range(len(L)):\n"
                  "    g = L[str(i)]\n"
                  "    attrs = ' '.join('%s=%s' % (k, ints(g.attrs[k])) for k in sorted(g.attrs) if k != 'type')\n"
                  "    data = ' '.join('%s:%s:%s' % (k, g[k].dtype.str, list(g[k].shape)) for k in sorted(g))\n"
                  "    print(' '.join(x for x in [str(i), g.attrs['type'], attrs, data] if x))\n"
                  "print('%.6e' % np.abs(L['7']['weight'][()]).sum())\n");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto out = lines(r.out);
  const std::vector<std::string> expected = {
      "kdistill-runtime-1 cnn:8,16 [1, 28, 28] 10 0.5 0.25 int64 float64",
      "0 Conv2d in_channels=[1] kernel_size=[3, 3] out_channels=[8] padding=[1, 1] stride=[1, 1] "
      "bias:<f4:[8] weight:<f4:[8, 1, 3, 3]",
      "1 ReLU",
      "2 MaxPool2d kernel_size=[2, 2] padding=[0, 0] stride=[2, 2]",
      "3 Conv2d in_channels=[8] kernel_size=[3, 3] out_channels=[16] padding=[1, 1] stride=[1, 1] "
      "bias:<f4:[16] weight:<f4:[16, 8, 3, 3]",
      "4 ReLU",
      "5 MaxPool2d kernel_size=[2, 2] padding=[0, 0] stride=[2, 2]",
      "6 Flatten",
      "7 Linear in_features=[784] out_features=[10] bias:<f4:[10] weight:<f4:[10, 784]",
  };
  ASSERT_EQ(out.size(), expected.size() + 1) << r.out;
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(out[i], expected[i]);
  // The last Linear has no BatchNorm after it: its weights are written as they are.
  const double written = std::stod(out.back());
  const double own = net[net->size() - 1]->as<nn::LinearImpl>()->weight.abs().sum().item<double>();
  EXPECT_NEAR(written, own, 1e-5 * own);
}

TEST(Export, InfersAnMlpInputShapeAndKeepsTheTrainingMode) {
  torch::manual_seed(1);
  TempDir dir;
  Model model(mlp(784, {16}, 10, 0.2));
  ASSERT_TRUE(model.is_training());
  export_model(model, dir / "mlp.h5");
  EXPECT_TRUE(model.is_training());  // evaluated in eval mode, then put back
  const auto rt = runtime::Model::load(dir / "mlp.h5");
  EXPECT_EQ(rt.input_shape(), std::vector<int64_t>{784});
  EXPECT_EQ(rt.num_classes(), 10);
  EXPECT_EQ(rt.num_layers(), 4);  // Flatten, Linear, ReLU, Linear: the Dropout is gone
}

TEST(Export, ReplacesAnExistingFileAndLeavesItAloneOnFailure) {
  torch::manual_seed(2);
  TempDir dir;
  const std::string path = dir / "m.h5";
  export_model(Model(mlp(6, {4}, 3)), path);
  export_model(Model(mlp(6, {4}, 5)), path);
  EXPECT_EQ(runtime::Model::load(path).num_classes(), 5);
  ExportOptions bad;
  bad.std(0);
  EXPECT_THAT(error_of([&] { export_model(Model(mlp(6, {4}, 7)), path, bad); }),
              HasSubstr("export_model: std must be finite and > 0, got 0"));
  EXPECT_EQ(runtime::Model::load(path).num_classes(), 5);
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) files += entry.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1u);  // no temporary left behind
}

TEST(Export, RefusesWhatTheRuntimeCannotRunNamingTheLayer) {
  torch::manual_seed(3);
  auto refusal = [](nn::Sequential net, std::vector<int64_t> shape) {
    TempDir dir;
    ExportOptions options;
    options.input_shape(std::move(shape));
    return error_of([&] { export_model(Model(net), dir / "m.h5", options); });
  };
  auto msg = refusal(nn::Sequential(nn::Flatten(), nn::Linear(4, 4), nn::Softmax(1), nn::Linear(4, 2)), {4});
  EXPECT_THAT(msg, HasSubstr("export_model: layer 2 (Softmax) is not supported; supported: Flatten, Linear")) << msg;
  msg = refusal(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(4, 4, 3).groups(2)), nn::Flatten(), nn::Linear(36, 2)),
                {4, 5, 5});
  EXPECT_THAT(msg, HasSubstr("export_model: layer 0 (Conv2d): groups must be 1, got 2")) << msg;
  msg = refusal(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 2, 3).dilation(2)), nn::Flatten(), nn::Linear(2, 2)),
                {1, 5, 5});
  EXPECT_THAT(msg, HasSubstr("layer 0 (Conv2d): dilation must be 1, got [2, 2]")) << msg;
  msg = refusal(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 2, 3).padding(1).padding_mode(torch::kReflect)),
                               nn::Flatten(), nn::Linear(50, 2)),
                {1, 5, 5});
  EXPECT_THAT(msg, HasSubstr("layer 0 (Conv2d): only zero padding is supported")) << msg;
  msg = refusal(nn::Sequential(nn::MaxPool2d(nn::MaxPool2dOptions(2).padding(1)), nn::Flatten(), nn::Linear(9, 2)),
                {1, 4, 4});
  EXPECT_THAT(msg, HasSubstr("layer 0 (MaxPool2d): padding must be 0, got [1, 1]")) << msg;
  msg = refusal(nn::Sequential(nn::AvgPool2d(nn::AvgPool2dOptions(2).ceil_mode(true)), nn::Flatten(), nn::Linear(9, 2)),
                {1, 5, 5});
  EXPECT_THAT(msg, HasSubstr("layer 0 (AvgPool2d): ceil_mode must be off")) << msg;
  msg = refusal(nn::Sequential(nn::Flatten(), nn::BatchNorm1d(4), nn::Linear(4, 2)), {4});
  EXPECT_THAT(msg, HasSubstr("layer 1 (BatchNorm1d): must come right after a Linear")) << msg;
  msg = refusal(nn::Sequential(nn::Linear(4, 4), nn::ReLU(), nn::BatchNorm1d(4), nn::Linear(4, 2)), {4});
  EXPECT_THAT(msg, HasSubstr("layer 2 (BatchNorm1d): must come right after a Linear")) << msg;
  msg = refusal(nn::Sequential(nn::Conv2d(1, 2, 3)), {1, 5, 5});
  EXPECT_THAT(msg, HasSubstr("the model gives [2, 3, 3] per input")) << msg;
  msg = refusal(nn::Sequential(nn::Linear(28, 4)), {1, 28, 28});
  EXPECT_THAT(msg, HasSubstr("layer 0 (Linear): needs flat inputs but gets [1, 28, 28]")) << msg;
  msg = refusal(mlp(784, {8}, 10), {1, 28, 29});
  EXPECT_THAT(msg, HasSubstr("layer 1 (Linear): takes 784 features but its input has 812")) << msg;
  msg = refusal(cnn({1, 28, 28}, {4}, 10), {});
  EXPECT_THAT(msg, HasSubstr("ExportOptions::input_shape is needed for a model that starts with Conv2d")) << msg;

  TempDir dir;
  msg = error_of([&] { export_model(Model(nn::Linear(4, 2)), dir / "m.h5"); });
  EXPECT_THAT(msg, HasSubstr("only a torch::nn::Sequential can be exported; this model is a Linear")) << msg;
  EXPECT_FALSE(std::filesystem::exists(dir / "m.h5"));
}

TEST(Export, TorchScriptModelsFromPython) {
  KDISTILL_REQUIRE_PYTHON_TORCH();
  TempDir dir;
  auto r = python("d = r'" + dir.path() + "'\n" + kPyModels);
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* name : {"mlp_script.pt", "mlp_trace.pt", "cnn_script.pt", "cnn_trace.pt"}) {
    SCOPED_TRACE(name);
    expect_parity(Model::load_torchscript(dir / name), {1, 28, 28});
  }
  {
    SCOPED_TRACE("nested.pt");
    expect_parity(Model::load_torchscript(dir / "nested.pt"), {12});
  }
  ExportOptions options;
  options.input_shape({4});
  auto msg = error_of([&] { export_model(Model::load_torchscript(dir / "softmax.pt"), dir / "s.h5", options); });
  EXPECT_THAT(msg, HasSubstr("export_model: layer 1 (Softmax) is not supported")) << msg;
  msg = error_of([&] { export_model(Model::load_torchscript(dir / "custom.pt"), dir / "c.h5", options); });
  EXPECT_THAT(msg,
              HasSubstr("only an nn.Sequential can be exported; this TorchScript model is a __torch__.Net")) << msg;
}

}  // namespace kdistill::test
