#pragma once

// Context every suite records: versions, the BLAS in use, the device and thread count, so a
// result file says where its numbers came from.

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "kdistill/core/system.h"

namespace kdistill::benchmarks {

inline void add_context(bool allocator_tuned) {
  auto info = kdistill::system_info();
  benchmark::AddCustomContext("allocator", allocator_tuned ? "glibc, kdistill::tune_allocator()" : "default");
  benchmark::AddCustomContext("kdistill_version", info.kdistill_version);
  benchmark::AddCustomContext("torch_version", info.torch_version);
  benchmark::AddCustomContext("blas", info.blas_library);
  benchmark::AddCustomContext("device", info.cuda_available ? "cpu (cuda available)" : "cpu");
}

/// The rate counter for samples processed per iteration.
inline void count_samples(benchmark::State& state, int64_t per_iteration) {
  state.counters["samples_per_s"] =
      benchmark::Counter(static_cast<double>(per_iteration) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}

}  // namespace kdistill::benchmarks

#define KDISTILL_BENCHMARK_MAIN()                       \
  int main(int argc, char** argv) {                     \
    const bool tuned = kdistill::tune_allocator();      \
    benchmark::Initialize(&argc, argv);                 \
    kdistill::benchmarks::add_context(tuned);           \
    benchmark::RunSpecifiedBenchmarks();                \
    benchmark::Shutdown();                              \
    return 0;                                           \
  }
