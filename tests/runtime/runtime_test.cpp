// Tests for kdistill/runtime/runtime.h: the Eigen runtime gives LibTorch's eval-mode logits for
// every supported layer, refuses bad files naming them, and is safe to share between threads.

#include "kdistill/runtime/runtime.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/models/builders.h"
#include "kdistill/models/model.h"
#include "kdistill/export/export.h"
#include "support.h"

namespace kdistill::test {
namespace {

namespace nn = torch::nn;
using ::testing::HasSubstr;

// Gives every BatchNorm in `net` statistics and affine parameters far from the identity, so that
// folding them is really tested.
void randomize_batch_norms(nn::Sequential& net) {
  torch::NoGradGuard no_grad;
  for (const auto& child : net->modules(/*include_self=*/false)) {
    auto set = [](torch::Tensor& mean, torch::Tensor& var, torch::Tensor& weight, torch::Tensor& bias) {
      mean.copy_(torch::randn_like(mean) * 0.5);
      var.copy_(torch::rand_like(var) * 2 + 0.25);
      weight.copy_(torch::randn_like(weight));
      bias.copy_(torch::randn_like(bias));
    };
    if (auto* bn = dynamic_cast<nn::BatchNorm1dImpl*>(child.get())) {
      set(bn->running_mean, bn->running_var, bn->weight, bn->bias);
    }
    if (auto* bn = dynamic_cast<nn::BatchNorm2dImpl*>(child.get())) {
      set(bn->running_mean, bn->running_var, bn->weight, bn->bias);
    }
  }
}

// The runtime's logits for `x` (raw inputs, [B, ...]).
torch::Tensor runtime_logits(const runtime::Model& rt, const torch::Tensor& x) {
  const auto input = x.contiguous();
  auto logits = torch::empty({input.size(0), rt.num_classes()});
  rt.predict(input.data_ptr<float>(), static_cast<int>(input.size(0)), logits.data_ptr<float>());
  return logits;
}

// Exports `model` and checks that the runtime's logits match LibTorch's eval-mode forward on
// random inputs: max |diff| <= 1e-5 * max(1, max |ref|).
void expect_parity(Model model, const std::vector<int64_t>& shape, ExportOptions options = {},
                   std::vector<int> batches = {1, 7}) {
  TempDir dir;
  const std::string path = dir / "model.h5";
  if (options.input_shape().empty()) options.input_shape(shape);
  model.eval();
  export_model(model, path, options);
  const auto rt = runtime::Model::load(path);
  EXPECT_EQ(rt.input_shape(), shape);
  for (int batch : batches) {
    std::vector<int64_t> dims{batch};
    dims.insert(dims.end(), shape.begin(), shape.end());
    torch::manual_seed(100 + batch);
    const auto x = torch::rand(dims) * 2 - 1;
    torch::Tensor ref;
    {
      torch::NoGradGuard no_grad;
      ref = model.forward((x - static_cast<float>(options.mean())) / static_cast<float>(options.std()));
    }
    ASSERT_EQ(ref.dim(), 2);
    ASSERT_EQ(ref.size(1), rt.num_classes());
    const auto got = runtime_logits(rt, x);
    const double scale = std::max(1.0, ref.abs().max().item<double>());
    const double diff = (got - ref).abs().max().item<double>();
    EXPECT_LE(diff, 1e-5 * scale) << "batch " << batch << "\n" << rt.describe();
  }
}

}  // namespace

TEST(RuntimeParity, MlpBuilder) {
  torch::manual_seed(0);
  // 130 inputs run as 64 + 64 + 2: the chunking is covered too.
  expect_parity(Model(mlp(784, {64}, 10)), {1, 28, 28}, {}, {1, 7, 130});
}

TEST(RuntimeParity, MlpWithDropoutDropsIt) {
  torch::manual_seed(1);
  expect_parity(Model(mlp(20, {16, 8}, 4, 0.5)), {20});
}

TEST(RuntimeParity, CnnBuilderWithBatchNorm) {
  torch::manual_seed(2);
  auto net = cnn({1, 28, 28}, {8, 16}, 10);
  randomize_batch_norms(net);
  expect_parity(Model(net), {1, 28, 28}, {}, {1, 5, 70});
}

TEST(RuntimeParity, LinearBatchNorm1d) {
  torch::manual_seed(3);
  nn::Sequential net(nn::Linear(12, 16), nn::BatchNorm1d(16), nn::ReLU(), nn::Linear(16, 5));
  randomize_batch_norms(net);
  expect_parity(Model(net), {12});
}

TEST(RuntimeParity, BatchNormWithoutAffineAndLinearWithoutBias) {
  torch::manual_seed(4);
  nn::Sequential net(nn::Linear(nn::LinearOptions(6, 8).bias(false)),
                     nn::BatchNorm1d(nn::BatchNormOptions(8).affine(false)), nn::Tanh(), nn::Linear(8, 3));
  {
    torch::NoGradGuard no_grad;
    auto* bn = net[1]->as<nn::BatchNorm1dImpl>();
    bn->running_mean.copy_(torch::randn({8}));
    bn->running_var.copy_(torch::rand({8}) + 0.5);
  }
  expect_parity(Model(net), {6});
}

TEST(RuntimeParity, GeluTanhSigmoid) {
  torch::manual_seed(5);
  nn::Sequential net(nn::Linear(10, 16), nn::GELU(), nn::Linear(16, 16), nn::Tanh(), nn::Linear(16, 16),
                     nn::Sigmoid(), nn::Linear(16, 16), nn::GELU(nn::GELUOptions().approximate("tanh")),
                     nn::Linear(16, 4));
  expect_parity(Model(net), {10});
}

TEST(RuntimeParity, AvgPool2d) {
  torch::manual_seed(6);
  // 10x10 -conv3-> 8x8 -avg2-> 4x4 -avg3 stride 1-> 2x2
  nn::Sequential net(nn::Conv2d(3, 4, 3), nn::ReLU(), nn::AvgPool2d(2),
                     nn::AvgPool2d(nn::AvgPool2dOptions(3).stride(1)), nn::Flatten(), nn::Linear(4 * 2 * 2, 5));
  expect_parity(Model(net), {3, 10, 10});
}

TEST(RuntimeParity, StridedConvWithoutPaddingOrBias) {
  torch::manual_seed(7);
  // 11x9 -conv3 stride 2-> 5x4
  nn::Sequential net(nn::Conv2d(nn::Conv2dOptions(2, 6, 3).stride(2).bias(false)), nn::ReLU(), nn::Flatten(),
                     nn::Linear(6 * 5 * 4, 3));
  expect_parity(Model(net), {2, 11, 9});
}

TEST(RuntimeParity, AsymmetricKernelStrideAndPadding) {
  torch::manual_seed(8);
  // 9x8 -conv (3,2) stride (2,1) padding (1,0)-> 5x7 -maxpool 3 stride 2-> 2x3 -conv1x1-> 2x3
  const auto conv = nn::Conv2dOptions(3, 5, {3, 2}).stride({2, 1}).padding(torch::ExpandingArray<2>({1, 0}));
  nn::Sequential net(nn::Conv2d(conv), nn::BatchNorm2d(5), nn::Sigmoid(),
                     nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2)), nn::Conv2d(5, 4, 1), nn::Flatten(),
                     nn::Linear(4 * 2 * 3, 6));
  randomize_batch_norms(net);
  expect_parity(Model(net), {3, 9, 8});
}

TEST(RuntimeParity, Normalisation) {
  torch::manual_seed(10);
  ExportOptions options;
  options.mean(0.2860);
  options.std(0.3530);
  expect_parity(Model(mlp(784, {32}, 10)), {1, 28, 28}, options);
  const auto net = cnn({1, 12, 12}, {4}, 3);
  options.mean(-1.5);
  options.std(2.0);
  expect_parity(Model(net), {1, 12, 12}, options);
}

TEST(Runtime, ReportsItsShapeAndLayers) {
  torch::manual_seed(11);
  TempDir dir;
  ExportOptions options;
  options.input_shape({1, 28, 28});
  options.mean(0.5);
  options.std(0.25);
  export_model(Model(cnn({1, 28, 28}, {8, 16}, 10)), dir / "cnn.h5", options);
  const auto rt = runtime::Model::load(dir / "cnn.h5");
  EXPECT_EQ(rt.input_shape(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(rt.input_size(), 784);
  EXPECT_EQ(rt.num_classes(), 10);
  EXPECT_EQ(rt.mean(), 0.5);
  EXPECT_EQ(rt.stddev(), 0.25);
  // Conv, ReLU, MaxPool twice (BatchNorm folded), Flatten, Linear.
  EXPECT_EQ(rt.num_layers(), 8);
  const auto text = rt.describe();
  EXPECT_THAT(text, HasSubstr(dir / "cnn.h5")) << text;
  EXPECT_THAT(text, HasSubstr("Conv2d 1->8 k3x3 s1x1 p1x1 -> [8, 28, 28]")) << text;
  EXPECT_THAT(text, HasSubstr("MaxPool2d k2x2 s2x2 -> [16, 7, 7]")) << text;
  EXPECT_THAT(text, HasSubstr("Linear 784->10 -> [10]")) << text;
}

TEST(Runtime, PredictChecksItsArguments) {
  torch::manual_seed(12);
  TempDir dir;
  export_model(Model(mlp(4, {3}, 2)), dir / "m.h5");
  const auto rt = runtime::Model::load(dir / "m.h5");
  std::vector<float> x(8, 0.5f), y(4, -7.0f);
  EXPECT_THAT(error_of([&] { rt.predict(x.data(), -1, y.data()); }), HasSubstr("batch must be >= 0, got -1"));
  EXPECT_THAT(error_of([&] { rt.predict(nullptr, 2, y.data()); }), HasSubstr("must not be null"));
  rt.predict(nullptr, 0, nullptr);  // an empty batch is nothing to do
  EXPECT_EQ(y[0], -7.0f);
  const auto logits = rt.predict(x);
  ASSERT_EQ(logits.size(), 4u);
  EXPECT_EQ(logits[0], logits[2]);  // the same input twice
  EXPECT_THAT(error_of([&] { rt.predict(std::vector<float>(5)); }), HasSubstr("not a multiple of input_size 4"));
}

TEST(RuntimeLoad, MissingFileNamesIt) {
  TempDir dir;
  const std::string path = dir / "absent.h5";
  const auto msg = error_of([&] { runtime::Model::load(path); });
  EXPECT_THAT(msg, HasSubstr(path)) << msg;
  EXPECT_THAT(msg, HasSubstr("does not exist")) << msg;
}

TEST(RuntimeLoad, NonHdf5FileNamesIt) {
  TempDir dir;
  const std::string path = dir / "text.h5";
  std::ofstream(path) << "this is not an HDF5 file\n";
  const auto msg = error_of([&] { runtime::Model::load(path); });
  EXPECT_THAT(msg, HasSubstr(path)) << msg;
  EXPECT_THAT(msg, HasSubstr("not an HDF5 file")) << msg;
}

// Broken files written with h5py, an independent writer: each must be refused with the path
// and the problem.
TEST(RuntimeLoad, RefusesBrokenFilesNamingTheProblem) {
  if (!have_python_module("h5py")) GTEST_SKIP() << "python3-h5py is not installed (" KDISTILL_PYTHON "): skipped";
  TempDir dir;
  auto r = python("import h5py, numpy as np\n"
                  "d = r'" + dir.path() + "'\n"
                  "def model(name, layers=True, fmt='kdistill-runtime-1', classes=3):\n"
                  "    f = h5py.File(d + '/' + name, 'w')\n"
                  "    f.attrs['format'] = fmt\n"
                  "    f.attrs['input_shape'] = np.array([4], dtype=np.int64)\n"
                  "    f.attrs['num_classes'] = np.int64(classes)\n"
                  "    f.attrs['mean'] = 0.0\n"
                  "    f.attrs['std'] = 1.0\n"
                  "    if layers: f.create_group('layers')\n"
                  "    return f\n"
                  "def linear(f, i, n_in, n_out, weight=True):\n"
                  "    g = f['layers'].create_group(str(i))\n"
                  "    g.attrs['type'] = 'Linear'\n"
                  "    g.attrs['in_features'] = np.int64(n_in)\n"
                  "    g.attrs['out_features'] = np.int64(n_out)\n"
                  "    if weight: g['weight'] = np.ones((n_out, n_in), np.float32)\n"
                  "    g['bias'] = np.zeros(n_out, np.float32)\n"
                  "    return g\n"
                  "f = model('good.h5'); linear(f, 0, 4, 3); f.close()\n"
                  "model('no_layers.h5', layers=False).close()\n"
                  "f = model('bad_format.h5', fmt='onnx'); linear(f, 0, 4, 3); f.close()\n"
                  "f = model('chain.h5'); linear(f, 0, 4, 5); linear(f, 1, 6, 3); f.close()\n"
                  "f = model('no_weight.h5'); linear(f, 0, 4, 3, weight=False); f.close()\n"
                  "f = model('classes.h5', classes=7); linear(f, 0, 4, 3); f.close()\n"
                  "f = model('unknown.h5'); linear(f, 0, 4, 3)\n"
                  "f['layers'].create_group('1').attrs['type'] = 'LSTM'; f.close()\n"
                  "f = model('gap.h5'); linear(f, 0, 4, 3); linear(f, 2, 3, 3); f.close()\n"
                  "f = model('conv_flat.h5'); g = f['layers'].create_group('0')\n"
                  "g.attrs['type'] = 'Conv2d'; f.close()\n"
                  // Found by fuzz_runtime: a padding of 2^62 overflowed the output-size arithmetic.
                  "f = model('conv_pad.h5'); f.attrs['input_shape'] = np.array([1, 4, 4], dtype=np.int64)\n"
                  "g = f['layers'].create_group('0'); g.attrs['type'] = 'Conv2d'\n"
                  "for k, v in (('in_channels', 1), ('out_channels', 1), ('kernel_size', 1), ('stride', 1),"
                  " ('padding', 2**62)): g.attrs[k] = np.int64(v)\n"
                  "f.close()\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(runtime::Model::load(dir / "good.h5").num_classes(), 3);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"no_layers.h5", "has no group 'layers'"},
      {"bad_format.h5", "format is \"onnx\", expected \"kdistill-runtime-2\" (or the older \"kdistill-runtime-1\"); "
                        "re-export the model"},
      {"chain.h5", "layer 1 (Linear): in_features is 6 but its input has 5 features"},
      {"no_weight.h5", "layer 0 (Linear): has no dataset 'weight'"},
      {"classes.h5", "the last layer gives [3] per input, but num_classes is 7"},
      {"unknown.h5", "unknown layer type \"LSTM\""},
      {"gap.h5", "layers/1 is missing"},
      {"conv_flat.h5", "layer 0 (Conv2d): needs [C, H, W] inputs, got [4]"},
      {"conv_pad.h5", "padding 4611686018427387904 must be in [1, 1048576], [1, 1048576] and [0, 1048576]"},
  };
  for (const auto& [name, problem] : cases) {
    const std::string path = dir / name;
    const auto msg = error_of([&] { runtime::Model::load(path); });
    EXPECT_THAT(msg, HasSubstr(path)) << name << ": " << msg;
    EXPECT_THAT(msg, HasSubstr(problem)) << name << ": " << msg;
  }
}

// Graph files (format 2) whose nodes do not fit together are refused before any allocation,
// naming the node; a well-formed graph with a residual, a per-channel product and a concatenation
// computes what numpy computes.
TEST(RuntimeLoad, GraphFilesAreCheckedNodeByNode) {
  if (!have_python_module("h5py")) GTEST_SKIP() << "python3-h5py is not installed (" KDISTILL_PYTHON "): skipped";
  TempDir dir;
  auto r = python("import h5py, numpy as np\n"
                  "d = r'" + dir.path() + "'\n"
                  "rng = np.random.default_rng(0)\n"
                  "def model(name, nodes, shape=(2, 3, 3), classes=3):\n"
                  "    with h5py.File(d + '/' + name, 'w') as f:\n"
                  "        f.attrs['format'] = 'kdistill-runtime-2'\n"
                  "        f.attrs['input_shape'] = np.array(shape, dtype=np.int64)\n"
                  "        f.attrs['num_classes'] = np.int64(classes)\n"
                  "        f.attrs['mean'] = 0.0\n"
                  "        f.attrs['std'] = 1.0\n"
                  "        g = f.create_group('nodes')\n"
                  "        for i, (kind, inputs, attrs, weights) in enumerate(nodes):\n"
                  "            n = g.create_group(str(i))\n"
                  "            n.attrs['type'] = kind\n"
                  "            n.attrs['inputs'] = np.array(inputs, dtype=np.int64)\n"
                  "            for k, v in attrs.items(): n.attrs[k] = np.array(v, dtype=np.int64)\n"
                  "            for k, v in weights.items(): n[k] = v.astype(np.float32)\n"
                  "w = rng.normal(size=(3, 4 * 9)); b = rng.normal(size=3)\n"
                  "def lin(i, n_in):\n"
                  "    return ('Linear', [i], {'in_features': n_in, 'out_features': 3},\n"
                  "            {'weight': w[:, :n_in], 'bias': b})\n"
                  // y = Linear(flatten(cat(x + x * s, x))), s = per-channel values of a global pool
                  "good = [('GlobalAvgPool2d', [0], {}, {}), ('Mul', [0, 1], {}, {}), ('Add', [0, 2], {}, {}),\n"
                  "        ('Concat', [3, 0], {}, {}), ('Flatten', [4], {}, {}), lin(5, 36)]\n"
                  "model('good.h5', good)\n"
                  "x = rng.random((2, 2, 3, 3)).astype(np.float32); x.tofile(d + '/x.bin')\n"
                  "s = x.mean(axis=(2, 3), keepdims=True)\n"
                  "y = np.concatenate([x + x * s, x], axis=1).reshape(2, -1) @ w.T + b\n"
                  "y.astype(np.float32).tofile(d + '/y.bin')\n"
                  "model('later.h5', [('ReLU', [2], {}, {}), ('Flatten', [1], {}, {}), lin(2, 18)])\n"
                  "model('no_inputs.h5', [('ReLU', [], {}, {})])\n"
                  "model('add.h5', [('GlobalAvgPool2d', [0], {}, {}), ('Flatten', [1], {}, {}),\n"
                  "                 ('Add', [0, 2], {}, {})])\n"
                  "model('cat.h5', [('MaxPool2d', [0], {'kernel_size': 2, 'stride': 1}, {}),\n"
                  "                 ('Concat', [0, 1], {}, {})])\n"
                  "model('reshape.h5', [('Reshape', [0], {'shape': [5, 4]}, {})])\n"
                  "model('groups.h5', [('Conv2d', [0], {'in_channels': 2, 'out_channels': 3, 'groups': 2,\n"
                  "        'kernel_size': 1, 'stride': 1, 'padding': 0}, {})])\n"
                  "model('pool_pad.h5', [('MaxPool2d', [0], {'kernel_size': 2, 'stride': 1, 'padding': 2}, {})])\n"
                  "model('arity.h5', [('Mul', [0], {}, {})])\n");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto rt = runtime::Model::load(dir / "good.h5");
  std::vector<float> x(36), expected(6);
  std::ifstream(dir / "x.bin", std::ios::binary).read(reinterpret_cast<char*>(x.data()), 36 * sizeof(float));
  std::ifstream(dir / "y.bin", std::ios::binary).read(reinterpret_cast<char*>(expected.data()), 6 * sizeof(float));
  const auto got = rt.predict(x);
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], expected[i], 1e-5 * std::max(1.0f, std::abs(expected[i])));
  }
  EXPECT_THAT(rt.describe(), HasSubstr("Concat -> [4, 3, 3] <- 2 x")) << rt.describe();

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"later.h5", "node 0 (ReLU): input 2 is not an earlier value"},
      {"no_inputs.h5", "node 0 (ReLU): attribute 'inputs' is empty"},
      {"add.h5", "node 2 (Add): cannot combine [2, 3, 3] with [2]"},
      {"cat.h5", "node 1 (Concat): cannot concatenate [2, 3, 3] and [2, 2, 2] on channels"},
      {"reshape.h5", "node 0 (Reshape): cannot reshape [2, 3, 3] to [5, 4]"},
      {"groups.h5", "node 0 (Conv2d): groups 2 must be > 0 and divide in_channels 2 and out_channels 3"},
      {"pool_pad.h5", "node 0 (MaxPool2d): padding must be at most half the kernel, got 2x2"},
      {"arity.h5", "node 0 (Mul): takes 2 inputs, got 1"},
  };
  for (const auto& [name, problem] : cases) {
    const std::string path = dir / name;
    const auto msg = error_of([&] { runtime::Model::load(path); });
    EXPECT_THAT(msg, HasSubstr(path)) << name << ": " << msg;
    EXPECT_THAT(msg, HasSubstr(problem)) << name << ": " << msg;
  }
}

// One Model shared by 4 threads, each predicting 200 times on its own inputs and batch size,
// gives exactly the single-threaded results.
TEST(Runtime, ConcurrentCallersShareOneModel) {
  torch::manual_seed(13);
  TempDir dir;
  auto net = cnn({1, 16, 16}, {4, 8}, 5);
  randomize_batch_norms(net);
  ExportOptions options;
  options.input_shape({1, 16, 16});
  export_model(Model(net), dir / "cnn.h5", options);
  const auto rt = runtime::Model::load(dir / "cnn.h5");

  const std::vector<int> batches = {1, 3, 64, 70};
  std::vector<torch::Tensor> inputs, expected;
  for (int batch : batches) {
    inputs.push_back(torch::rand({batch, 1, 16, 16}));
    expected.push_back(runtime_logits(rt, inputs.back()));
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < batches.size(); ++t) {
    threads.emplace_back([&, t] {
      const int batch = batches[t];
      std::vector<float> logits(static_cast<size_t>(batch * rt.num_classes()));
      const float* want = expected[t].data_ptr<float>();
      for (int i = 0; i < 200; ++i) {
        rt.predict(inputs[t].data_ptr<float>(), batch, logits.data());
        if (!std::equal(logits.begin(), logits.end(), want)) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace kdistill::test
