// Tests for kdistill/export/export.h: the file h5py reads, TorchScript models from Python
// (scripted and traced), and every refusal naming the layer and the problem.

#include "kdistill/export/export.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <cstdlib>
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

// Python: puts every BatchNorm of a module in eval mode with non-trivial statistics.
constexpr const char* kPyRandomize = R"(
import torch, torch.nn as nn
def randomize(m):
    for x in m.modules():
        if isinstance(x, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                x.running_mean.copy_(torch.randn_like(x.running_mean) * 0.5)
                x.running_var.copy_(torch.rand_like(x.running_var) * 2 + 0.25)
                x.weight.copy_(torch.randn_like(x.weight))
                x.bias.copy_(torch.randn_like(x.bias))
    return m.eval()
)";

// Python fixtures: TorchScript students with non-trivial BatchNorm statistics, in eval mode.
constexpr const char* kPyModels = R"(
torch.manual_seed(0)
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
                  "L = f['nodes']\n"
                  "for i in range(len(L)):\n"
                  "    g = L[str(i)]\n"
                  "    attrs = ' '.join('%s=%s' % (k, ints(g.attrs[k])) for k in sorted(g.attrs) if k != 'type')\n"
                  "    data = ' '.join('%s:%s:%s' % (k, g[k].dtype.str, list(g[k].shape)) for k in sorted(g))\n"
                  "    print(' '.join(x for x in [str(i), g.attrs['type'], attrs, data] if x))\n"
                  "print('%.6e' % np.abs(L['7']['weight'][()]).sum())\n");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto out = lines(r.out);
  const std::vector<std::string> expected = {
      "kdistill-runtime-2 cnn:8,16 [1, 28, 28] 10 0.5 0.25 int64 float64",
      "0 Conv2d dilation=[1, 1] groups=[1] in_channels=[1] inputs=[0] kernel_size=[3, 3] out_channels=[8] "
      "padding=[1, 1] stride=[1, 1] bias:<f4:[8] weight:<f4:[8, 1, 3, 3]",
      "1 ReLU inputs=[1]",
      "2 MaxPool2d inputs=[2] kernel_size=[2, 2] padding=[0, 0] stride=[2, 2]",
      "3 Conv2d dilation=[1, 1] groups=[1] in_channels=[8] inputs=[3] kernel_size=[3, 3] out_channels=[16] "
      "padding=[1, 1] stride=[1, 1] bias:<f4:[16] weight:<f4:[16, 8, 3, 3]",
      "4 ReLU inputs=[4]",
      "5 MaxPool2d inputs=[5] kernel_size=[2, 2] padding=[0, 0] stride=[2, 2]",
      "6 Flatten inputs=[6]",
      "7 Linear in_features=[784] inputs=[7] out_features=[10] bias:<f4:[10] weight:<f4:[10, 784]",
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
  EXPECT_EQ(rt.num_layers(), 3);  // Linear, ReLU, Linear: the Flatten of a flat input and the Dropout are gone
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
  msg = refusal(nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 2, 3).padding(1).padding_mode(torch::kReflect)),
                               nn::Flatten(), nn::Linear(50, 2)),
                {1, 5, 5});
  EXPECT_THAT(msg, HasSubstr("layer 0 (Conv2d): only zero padding is supported")) << msg;
  msg = refusal(nn::Sequential(nn::MaxPool2d(nn::MaxPool2dOptions(2).padding(2)), nn::Flatten(), nn::Linear(9, 2)),
                {1, 4, 4});
  EXPECT_THAT(msg, HasSubstr("layer 0 (MaxPool2d): padding must be at most half the kernel, got [2, 2]")) << msg;
  msg = refusal(nn::Sequential(nn::AvgPool2d(nn::AvgPool2dOptions(2).ceil_mode(true)), nn::Flatten(), nn::Linear(9, 2)),
                {1, 5, 5});
  EXPECT_THAT(msg, HasSubstr("layer 0 (AvgPool2d): ceil_mode must be off")) << msg;
  msg = refusal(nn::Sequential(nn::Flatten(), nn::BatchNorm1d(5), nn::Linear(4, 2)), {4});
  EXPECT_THAT(msg, HasSubstr("layer 1 (BatchNorm1d): has 5 channels but its input has 4")) << msg;
  msg = refusal(nn::Sequential(nn::Conv2d(1, 2, 3)), {1, 5, 5});
  EXPECT_THAT(msg, HasSubstr("the model gives [2, 3, 3] per input; the runtime needs [num_classes] logits")) << msg;
  msg = refusal(nn::Sequential(nn::Linear(28, 4)), {1, 28, 28});
  EXPECT_THAT(msg, HasSubstr("layer 0 (Linear): needs flat inputs but gets [1, 28, 28]")) << msg;
  msg = refusal(mlp(784, {8}, 10), {1, 28, 29});
  EXPECT_THAT(msg, HasSubstr("layer 1 (Linear): takes 784 features but its input has 812")) << msg;
  msg = refusal(cnn({1, 28, 28}, {4}, 10), {});
  EXPECT_THAT(msg, HasSubstr("ExportOptions::input_shape is needed for a model that starts with Conv2d")) << msg;

  TempDir dir;
  msg = error_of([&] { export_model(Model(nn::Linear(4, 2)), dir / "m.h5"); });
  EXPECT_THAT(msg, HasSubstr("a C++ model must be a torch::nn::Sequential to be exported (a TorchScript model may be "
                             "any module); this model is a Linear")) << msg;
  EXPECT_FALSE(std::filesystem::exists(dir / "m.h5"));
}

TEST(Export, TorchScriptModelsFromPython) {
  KDISTILL_REQUIRE_PYTHON_TORCH();
  TempDir dir;
  auto r = python("d = r'" + dir.path() + "'\n" + kPyRandomize + kPyModels);
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
  EXPECT_THAT(msg, HasSubstr("export_model: aten::softmax at ")) << msg;
  EXPECT_THAT(msg, HasSubstr("is not supported; supported: aten::linear")) << msg;
  msg = error_of([&] { export_model(Model::load_torchscript(dir / "custom.pt"), dir / "c.h5", options); });
  EXPECT_THAT(msg, HasSubstr("export_model: aten::mul at ")) << msg;
  EXPECT_THAT(msg, HasSubstr("(`return self.fc(x) * 2`): only the mul of two tensors is supported")) << msg;
}

}  // namespace kdistill::test

namespace kdistill::test {
namespace {

// Students written as Python classes, the usual way, saved both scripted and traced. Each line of
// `manifest.txt` is "name C,H,W". The op cases wrap one operation between a 1x1 convolution (so
// that its input has both signs) and a linear head.
constexpr const char* kPyGraphs = R"(
import torch.nn.functional as F
torch.manual_seed(0)
manifest = open(d + '/manifest.txt', 'w')

def save(name, model, shape, trace=True):
    model = randomize(model)
    torch.jit.script(model).save('%s/%s_script.pt' % (d, name))
    manifest.write('%s_script %s\n' % (name, ','.join(map(str, shape))))
    if trace:
        torch.jit.trace(model, torch.rand(2, *shape)).save('%s/%s_trace.pt' % (d, name))
        manifest.write('%s_trace %s\n' % (name, ','.join(map(str, shape))))

class Case(nn.Module):
    def __init__(self, body, features):
        super().__init__()
        self.pre = nn.Conv2d(4, 4, 1)
        self.body = body
        self.head = nn.Linear(features, 3)
    def forward(self, x):
        return self.head(torch.flatten(self.body(self.pre(x)), 1))

class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
    def forward(self, x):
        return x + self.conv(x)

class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
    def forward(self, x):
        s = torch.sigmoid(self.fc(x.mean((2, 3))))
        return x * s.view(x.size(0), x.size(1), 1, 1)

class Cat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 2, 1)
        self.b = nn.Conv2d(4, 3, 3, padding=1)
    def forward(self, x):
        return torch.cat([self.a(x), F.relu(self.b(x))], 1)

class Reshape(nn.Module):
    def forward(self, x):
        return x.reshape(x.size(0), 8, 18).view(x.shape[0], -1)

class MeanKeep(nn.Module):
    def forward(self, x):
        return x.mean([-1, -2], keepdim=True)

class ConvReadTwice(nn.Module):
    # The convolution's output is read by the BatchNorm (through a dropout) and by the sum: the
    # BatchNorm must not be folded into it.
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.drop = nn.Dropout(0.1)
        self.bn = nn.BatchNorm2d(4)
    def forward(self, x):
        y = self.conv(x)
        return y + self.bn(self.drop(y))

class MatMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(144, 5))
    def forward(self, x):
        return torch.flatten(x, 1) @ self.w

c = lambda *a, **k: nn.Conv2d(*a, **k)
cases = {
    'conv_grouped': (c(4, 6, 3, padding=1, groups=2), 6 * 36),
    'conv_depthwise': (c(4, 4, 3, stride=2, padding=1, groups=4), 4 * 9),
    'conv_multiplier': (c(4, 8, 3, groups=4, bias=False), 8 * 16),
    'conv_dilated': (c(4, 5, 3, padding=2, dilation=2), 5 * 36),
    'conv_asymmetric': (c(4, 5, (3, 2), stride=(2, 1), padding=(1, 0)), 5 * 15),
    'conv_same': (c(4, 5, 3, padding='same', bias=False), 5 * 36),
    'conv_bn_folded': (nn.Sequential(c(4, 6, 3), nn.BatchNorm2d(6)), 6 * 16),
    'conv_read_twice_bn': (ConvReadTwice(), 4 * 36),
    'bn_affine': (nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4)), 4 * 36),
    'bn1d_affine': (nn.Sequential(nn.Flatten(), nn.Tanh(), nn.BatchNorm1d(144)), 144),
    'relu6': (nn.ReLU6(), 144),
    'hardtanh': (nn.Hardtanh(-0.25, 0.5), 144),
    'gelu': (nn.GELU(), 144),
    'gelu_tanh': (nn.GELU(approximate='tanh'), 144),
    'silu': (nn.SiLU(), 144),
    'hardswish': (nn.Hardswish(), 144),
    'hardsigmoid': (nn.Hardsigmoid(), 144),
    'sigmoid': (nn.Sigmoid(), 144),
    'tanh': (nn.Tanh(), 144),
    'maxpool_padded': (nn.MaxPool2d(3, 2, 1), 4 * 9),
    'avgpool_padded': (nn.AvgPool2d(3, 2, 1), 4 * 9),
    'avgpool_exclude_pad': (nn.AvgPool2d(3, 2, 1, count_include_pad=False), 4 * 9),
    'adaptive_avgpool': (nn.AdaptiveAvgPool2d(1), 4),
    'mean_keepdim': (MeanKeep(), 4),
    'reshape_view': (Reshape(), 144),
    'residual_add': (Residual(), 144),
    'squeeze_excite_mul': (SqueezeExcite(), 144),
    'cat_channels': (Cat(), 5 * 36),
    'dropout': (nn.Dropout(0.5), 144),
    'matmul': (MatMul(), 5),
}
for name, (body, features) in cases.items():
    save(name, Case(body, features), [4, 6, 6])

sys.path.insert(0, source + '/bench')
from graph_students import ResNet, MobileNet, Mlp
save('resnet', ResNet(width=8), [1, 28, 28])
save('mobilenet', MobileNet(width=8, wide=16), [1, 28, 28])
save('mlp_class', Mlp(), [1, 28, 28])
manifest.close()

# Refusals.
class Softmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
    def forward(self, x):
        return torch.softmax(self.fc(x), 1)
class InPlaceReread(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
    def forward(self, x):
        y = self.fc(x)
        z = y.relu_()
        return y + z
class BatchMoved(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
    def forward(self, x):
        return self.fc(x.reshape(2, -1))
class DataBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
    def forward(self, x):
        if bool(x.sum() > 0):
            return self.fc(x)
        return self.fc(-x)
for name, m in [('softmax', Softmax()), ('inplace', InPlaceReread()), ('batch_moved', BatchMoved()),
                ('data_branch', DataBranch())]:
    torch.jit.script(m.eval()).save('%s/refuse_%s.pt' % (d, name))
)";

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::istringstream in(text);
  for (std::string d; std::getline(in, d, ',');) shape.push_back(std::stoll(d));
  return shape;
}

class GraphExport : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!have_python_torch()) return;
    dir_ = new TempDir();
    const auto r = python(std::string("import sys\nsource = r'") + KDISTILL_SOURCE_DIR + "'\nd = r'" + dir_->path() +
                          "'\n" + kPyRandomize + kPyGraphs);
    if (r.status != 0) error_ = r.err;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    KDISTILL_REQUIRE_PYTHON_TORCH();
    ASSERT_TRUE(error_.empty()) << error_;
  }
  static std::string path(const std::string& name) { return dir_->path() + "/" + name; }
  static std::vector<std::pair<std::string, std::vector<int64_t>>> manifest() {
    std::vector<std::pair<std::string, std::vector<int64_t>>> out;
    std::ifstream in(path("manifest.txt"));
    for (std::string name, shape; in >> name >> shape;) out.emplace_back(name, parse_shape(shape));
    return out;
  }
  static std::string refusal(const std::string& name) {
    TempDir out;
    return error_of([&] {
      export_model(Model::load_torchscript(path("refuse_" + name + ".pt")), out / "m.h5",
                   ExportOptions().input_shape({4}));
    });
  }

  static TempDir* dir_;
  static std::string error_;
};
TempDir* GraphExport::dir_ = nullptr;
std::string GraphExport::error_;

}  // namespace

// Every supported operation, scripted and traced, against LibTorch within 1e-5 relative.
TEST_F(GraphExport, EachOperationMatchesLibTorch) {
  size_t cases = 0;
  for (const auto& [name, shape] : manifest()) {
    if (name.rfind("resnet", 0) == 0 || name.rfind("mobilenet", 0) == 0 || name.rfind("mlp_class", 0) == 0) continue;
    SCOPED_TRACE(name);
    expect_parity(Model::load_torchscript(path(name + ".pt")), shape);
    ++cases;
  }
  EXPECT_EQ(cases, 60u);  // 30 cases, each scripted and traced
}

TEST_F(GraphExport, ResNetMobileNetAndMlpClassesMatchLibTorch) {
  for (const char* student : {"resnet", "mobilenet", "mlp_class"}) {
    for (const char* how : {"_script", "_trace"}) {
      SCOPED_TRACE(std::string(student) + how);
      expect_parity(Model::load_torchscript(path(std::string(student) + how + ".pt")), {1, 28, 28});
    }
  }
}

// The ResNet's BatchNorms are folded into its convolutions, and its residual blocks reuse buffers.
TEST_F(GraphExport, ResNetIsFoldedAndPlannedIntoFewBuffers) {
  TempDir out;
  export_model(Model::load_torchscript(path("resnet_script.pt")), out / "r.h5",
               ExportOptions().input_shape({1, 28, 28}));
  const auto rt = runtime::Model::load(out / "r.h5");
  const auto text = rt.describe();
  // stem conv + relu, 2 blocks of (conv relu conv add relu) + a shortcut conv, pool, flatten, fc
  EXPECT_EQ(rt.num_layers(), 2 + 5 + 6 + 3) << text;
  EXPECT_THAT(text, ::testing::Not(HasSubstr("Affine"))) << text;
  EXPECT_THAT(text, HasSubstr("Conv2d 8->16 k1x1 s2x2 p0x0 -> [16, 14, 14] <- 6")) << text;
  EXPECT_THAT(text, HasSubstr("Add -> [16, 14, 14] <- 9 10")) << text;
  EXPECT_THAT(text, HasSubstr(" 3 buffers")) << text;
}

// A model written as a class needs no input shape when it starts with a linear layer.
TEST_F(GraphExport, InfersTheInputWidthOfAnMlpClass) {
  TempDir out;
  auto msg = error_of([&] { export_model(Model::load_torchscript(path("mlp_class_script.pt")), out / "m.h5"); });
  // x.reshape(x.shape[0], -1) comes first: its width is only known from the linear layer after it.
  EXPECT_EQ(msg, "<no kdistill::Error thrown>");
  EXPECT_EQ(runtime::Model::load(out / "m.h5").input_shape(), std::vector<int64_t>{784});
  msg = error_of([&] { export_model(Model::load_torchscript(path("resnet_script.pt")), out / "r.h5"); });
  EXPECT_THAT(msg, HasSubstr("ExportOptions::input_shape is needed for a model that starts with aten::conv2d")) << msg;
}

TEST_F(GraphExport, RefusesNamingTheOperationItsSourceLineAndTheSupportedOnes) {
  auto msg = refusal("softmax");
  EXPECT_THAT(msg, HasSubstr("export_model: aten::softmax at ")) << msg;
  EXPECT_THAT(msg, HasSubstr("snippet.py:")) << msg;
  EXPECT_THAT(msg, HasSubstr("(`return torch.softmax(self.fc(x), 1)`) is not supported; supported: aten::linear"))
      << msg;
  msg = refusal("inplace");
  EXPECT_THAT(msg, HasSubstr("aten::relu_ at ")) << msg;
  EXPECT_THAT(msg, HasSubstr("changes its input in place, and the input is read again afterwards")) << msg;
  msg = refusal("batch_moved");
  EXPECT_THAT(msg, HasSubstr("aten::reshape at ")) << msg;
  EXPECT_THAT(msg, HasSubstr("only reshapes that keep the batch first")) << msg;
  msg = refusal("data_branch");  // the branch's condition is a reduction of the data
  EXPECT_THAT(msg, HasSubstr("aten::sum at ")) << msg;
  EXPECT_THAT(msg, HasSubstr("is not supported; supported: ")) << msg;
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~ScopedEnv() { ::unsetenv(name_); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
};

// Every build of the kernels this CPU runs (the portable one, AVX2 + FMA, AVX-512) matches
// LibTorch on every case, and describe() says which one runs.
TEST_F(GraphExport, EveryKernelBuildMatchesLibTorch) {
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  for (const auto& [kernels, runs] : {std::pair<std::string, bool>{"generic", true}, {"avx2", avx2},
                                      {"avx512", avx512}}) {
    if (!runs) continue;
    SCOPED_TRACE(kernels);
    ScopedEnv env("KDISTILL_RUNTIME_KERNELS", kernels.c_str());
    for (const auto& [name, shape] : manifest()) {
      SCOPED_TRACE(name);
      expect_parity(Model::load_torchscript(path(name + ".pt")), shape);
    }
    TempDir out;
    export_model(Model::load_torchscript(path("mobilenet_script.pt")), out / "m.h5",
                 ExportOptions().input_shape({1, 28, 28}));
    EXPECT_THAT(runtime::Model::load(out / "m.h5").describe(), HasSubstr(kernels + " kernels"));
  }
  {
    ScopedEnv env("KDISTILL_RUNTIME_KERNELS", "sse9");
    TempDir out;
    export_model(Model::load_torchscript(path("mlp_class_script.pt")), out / "m.h5");
    const auto msg = error_of([&] { runtime::Model::load(out / "m.h5"); });
    EXPECT_THAT(msg, HasSubstr("KDISTILL_RUNTIME_KERNELS is \"sse9\"; this build of the runtime has")) << msg;
  }
  if (!avx512) GTEST_SKIP() << "this CPU lacks AVX2/FMA or AVX-512: only the builds it runs were checked";
}

// predict() allocates nothing per call after warm-up: counted by a separate program that
// replaces malloc (Eigen's and the C++ library's allocations included), on the graph students,
// with normalisation, at batch sizes on both sides of the 64-sample chunk.
TEST_F(GraphExport, PredictAllocatesNothingPerCallAfterWarmUp) {
  TempDir out;
  for (const char* student : {"resnet", "mobilenet", "mlp_class"}) {
    SCOPED_TRACE(student);
    const std::string file = out / (std::string(student) + ".h5");
    export_model(Model::load_torchscript(path(std::string(student) + "_script.pt")), file,
                 ExportOptions().input_shape({1, 28, 28}).mean(0.5).std(0.25));
    const auto o = run(std::string(KDISTILL_RUNTIME_ALLOC_CHECK) + " " + file + " 1 8 64 70");
    EXPECT_EQ(o.status, 0) << o.out << o.err;
    EXPECT_THAT(o.out, HasSubstr("allocations after warm-up: 0")) << o.out << o.err;
  }
}

// The C++ Sequential path takes the same new operations.
TEST(Export, CppSequentialGroupedDilatedPaddedAndAffine) {
  torch::manual_seed(4);
  nn::BatchNorm2d bn(6);
  {
    torch::NoGradGuard no_grad;
    bn->running_mean.uniform_(-1, 1);
    bn->running_var.uniform_(0.5, 2);
    bn->weight.uniform_(-1, 1);
  }
  nn::Sequential net(nn::Conv2d(nn::Conv2dOptions(4, 6, 3).groups(2).padding(2).dilation(2)), nn::ReLU6(), bn,
                     nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)), nn::SiLU(),
                     nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(6, 3));
  expect_parity(Model(net), {4, 7, 7});
}

}  // namespace kdistill::test
