// Batch slicing from an in-memory Fashion-MNIST-sized data set: it must never be the bottleneck.
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "bench_common.h"
#include "kdistill/data/batch_iterator.h"

static void BM_BatchSlice(benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(2)));
  const int64_t batch = state.range(0);
  const bool shuffle = state.range(1) != 0;
  kdistill::data::TensorDataset ds(torch::randn({60000, 1, 28, 28}), torch::randint(0, 10, {60000}), 10);
  kdistill::data::BatchIterator it(ds, kdistill::data::BatchOptions().batch_size(batch).shuffle(shuffle), 0);
  int64_t i = 0;
  for (auto _ : state) {
    auto b = it.batch(i);
    benchmark::DoNotOptimize(b.inputs.data_ptr());
    i = (i + 1) % it.num_batches();
  }
  kdistill::benchmarks::count_samples(state, batch);
}
BENCHMARK(BM_BatchSlice)->ArgNames({"batch", "shuffle", "threads"})->ArgsProduct({{128, 1024}, {0, 1}, {2}});

KDISTILL_BENCHMARK_MAIN();
