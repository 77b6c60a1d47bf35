// What feature taps cost: the MLP-64 student's forward at batch 128 as a plain forward, through
// forward_with_features with no names (what the trainer calls when no objective asks for a
// feature), with one Sequential tap, and with a RecordFunction tap on a leaf with parameters.
#include <benchmark/benchmark.h>

#include <torch/torch.h>

#include "bench_common.h"
#include "kdistill/models/builders.h"
#include "kdistill/models/model.h"

namespace {

// The MLP-64 student written as a custom module: its Linear layers are not Sequential children,
// so tapping one goes through the RecordFunction path.
struct StudentImpl : torch::nn::Module {
  StudentImpl() : fc1(register_module("fc1", torch::nn::Linear(784, 64))), fc2(register_module("fc2", torch::nn::Linear(64, 10))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x.flatten(1)))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Student);

// kind 0: forward; 1: forward_with_features({}) (what the trainer calls when no objective asks
// for a feature); 2: the Sequential MLP-64 with its ReLU ("2") tapped; 3: the custom module with
// "fc1" tapped (RecordFunction). Kinds 0, 1 and 3 run the custom module; kind 2's plain forward is
// kind 4.
void BM_StudentForward(benchmark::State& state) {
  const int kind = static_cast<int>(state.range(0));
  torch::set_num_threads(static_cast<int>(state.range(1)));
  torch::manual_seed(0);
  kdistill::Model custom(Student(), "mlp:64-custom");
  kdistill::Model seq(kdistill::mlp(784, {64}, 10), "mlp:64");
  auto& m = kind == 2 || kind == 4 ? seq : custom;
  m.train();
  auto x = torch::randn({128, 1, 28, 28});
  const std::vector<std::string> none, relu = {"2"}, fc1 = {"fc1"};
  for (auto _ : state) {
    torch::Tensor out;
    if (kind == 0 || kind == 4) out = m.forward(x);
    else out = m.forward_with_features(x, kind == 1 ? none : kind == 2 ? relu : fc1).logits;
    benchmark::DoNotOptimize(out.data_ptr());
  }
  kdistill::benchmarks::count_samples(state, 128);
}
BENCHMARK(BM_StudentForward)->ArgNames({"kind", "threads"})->ArgsProduct({{0, 1, 2, 3, 4}, {2}});

}  // namespace

KDISTILL_BENCHMARK_MAIN();
