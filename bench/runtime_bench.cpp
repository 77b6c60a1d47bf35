// The Eigen runtime against LibTorch on the same students: MLP-64 (784-64-10, model:0) and the
// cnn:8,16 student (model:1), randomly initialised and exported to a temporary file at start.
//
// BM_EigenPredict: one runtime::Model shared by `threads` concurrent callers (Google Benchmark's
//   ->Threads), each predicting on its own thread; samples_per_s is their total.
// BM_TorchForward: the LibTorch module, eval mode, under NoGradGuard, with `threads` intra-op
//   threads (threads:1 is the like-for-like comparison with one Eigen caller).
#include <benchmark/benchmark.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "bench_common.h"
#include "kdistill/models/builders.h"
#include "kdistill/export/export.h"
#include "kdistill/runtime/runtime.h"

namespace {

const char* const kSpecs[] = {"mlp:64", "cnn:8,16"};

kdistill::Model build(int64_t which) {
  torch::manual_seed(0);
  auto model = kdistill::build_model(kSpecs[which], {1, 28, 28}, 10);
  model.eval();
  return model;
}

kdistill::Model& torch_model(int64_t which) {
  static kdistill::Model models[] = {build(0), build(1)};
  return models[which];
}

// The same students exported once and loaded by the runtime (which keeps the weights in memory,
// so the files are removed at once).
const kdistill::runtime::Model& eigen_model(int64_t which) {
  static const std::vector<kdistill::runtime::Model> models = [] {
    const auto dir =
        std::filesystem::temp_directory_path() / ("kdistill-runtime-bench-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    std::vector<kdistill::runtime::Model> out;
    for (int64_t i = 0; i < 2; ++i) {
      const auto path = (dir / ("student" + std::to_string(i) + ".h5")).string();
      kdistill::export_model(torch_model(i), path, kdistill::ExportOptions().input_shape({1, 28, 28}));
      out.push_back(kdistill::runtime::Model::load(path));
    }
    std::filesystem::remove_all(dir);
    return out;
  }();
  return models[static_cast<size_t>(which)];
}

}  // namespace

static void BM_EigenPredict(benchmark::State& state) {
  const auto& model = eigen_model(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  std::vector<float> input(static_cast<size_t>(batch * model.input_size()));
  std::vector<float> logits(static_cast<size_t>(batch * model.num_classes()));
  std::mt19937 rng(static_cast<unsigned>(state.thread_index()));
  std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
  for (auto& v : input) v = pixel(rng);
  model.predict(input.data(), batch, logits.data());  // sizes this thread's buffers
  for (auto _ : state) {
    model.predict(input.data(), batch, logits.data());
    benchmark::DoNotOptimize(logits.data());
    benchmark::ClobberMemory();
  }
  kdistill::benchmarks::count_samples(state, batch);
  state.SetLabel(kSpecs[state.range(0)]);
}
BENCHMARK(BM_EigenPredict)
    ->ArgNames({"model", "batch"})
    ->ArgsProduct({{0, 1}, {1, 8, 64, 256}})
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

static void BM_TorchForward(benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(2)));
  auto& model = torch_model(state.range(0));
  const int64_t batch = state.range(1);
  torch::manual_seed(1);
  const auto x = torch::rand({batch, 1, 28, 28});
  torch::NoGradGuard no_grad;
  model.forward(x);  // warm-up
  for (auto _ : state) {
    auto y = model.forward(x);
    benchmark::DoNotOptimize(y.data_ptr<float>());
  }
  kdistill::benchmarks::count_samples(state, batch);
  state.SetLabel(kSpecs[state.range(0)]);
}
BENCHMARK(BM_TorchForward)
    ->ArgNames({"model", "batch", "threads"})
    ->ArgsProduct({{0, 1}, {1, 8, 64, 256}, {1, 2}});

KDISTILL_BENCHMARK_MAIN();
