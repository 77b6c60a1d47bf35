// kd_loss forward + backward over batch and class sizes.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "bench_common.h"
#include "kdistill/losses/kd_loss.h"

static void BM_KDLossForwardBackward(benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(2)));
  const int64_t batch = state.range(0), classes = state.range(1);
  torch::manual_seed(0);
  auto s = torch::randn({batch, classes}, torch::requires_grad());
  auto t = torch::randn({batch, classes});
  auto y = torch::randint(0, classes, {batch}, torch::kLong);
  const auto opts = kdistill::KDLossOptions().temperature(4).alpha(0.9);
  for (auto _ : state) {
    auto loss = kdistill::kd_loss(s, t, y, opts);
    loss.backward();
    s.mutable_grad().reset();
  }
  kdistill::benchmarks::count_samples(state, batch);
}
BENCHMARK(BM_KDLossForwardBackward)
    ->ArgNames({"batch", "classes", "threads"})
    ->ArgsProduct({{32, 128, 1024}, {10, 100, 1000}, {2}});

KDISTILL_BENCHMARK_MAIN();
