#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "kdistill/models/model.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::bench {

/// How long and how often to measure.
///
/// Example:
/// ```
/// auto opts = kdistill::bench::LatencyOptions().min_seconds(0.5).threads(2);
/// ```
struct LatencyOptions {
  /// Warm-up: at least this many calls ...
  TORCH_ARG(int64_t, warmup_iters) = 10;
  /// ... and at least this long.
  TORCH_ARG(double, warmup_seconds) = 0.2;
  /// Timed calls at batch 1; at batch B at least max(min_iters / B, 20) calls are timed.
  TORCH_ARG(int64_t, min_iters) = 1000;
  /// Timed calls go on until this much time has passed too.
  TORCH_ARG(double, min_seconds) = 1.0;
  /// Stop timing after this long even if `min_iters` is not reached (slow models).
  TORCH_ARG(double, max_seconds) = 30.0;
  /// Intra-op threads during the measurement; 0 leaves the setting alone. Reported either way.
  TORCH_ARG(int, threads) = 0;
};

/// Latency of one model at one batch size. Times in milliseconds.
struct LatencyStats {
  int64_t batch = 0;
  int64_t iters = 0;         ///< timed calls
  double cold_ms = 0;        ///< the first call, before any warm-up
  double mean_ms = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double max_ms = 0;
  double iqr_ms = 0;         ///< p75 - p25
  double samples_per_s = 0;  ///< batch / mean latency
  int threads = 0;           ///< intra-op threads in use
};

/// Times `call` (one inference of `batch` samples): the cold first call, warm-up, then timed calls
/// until both the minimum count and duration are reached. `sync` runs after every call inside the
/// timed region (e.g. a CUDA synchronisation) so that asynchronous work is counted.
LatencyStats measure(const std::function<void()>& call, int64_t batch, const LatencyOptions& options = {},
                     const std::function<void()>& sync = {});

/// Latency of `model` on random inputs of shape `[B, sample_shape...]` for each batch size, on
/// `device`, in eval mode without gradients; CUDA calls are synchronised per call.
///
/// Example:
/// ```
/// auto stats = kdistill::bench::measure_model(student, {1, 28, 28}, {1, 256}, torch::kCPU);
/// ```
std::vector<LatencyStats> measure_model(Model& model, const std::vector<int64_t>& sample_shape,
                                        const std::vector<int64_t>& batch_sizes, const torch::Device& device,
                                        const LatencyOptions& options = {});

/// The q-quantile (q in [0, 1]) of `values` by linear interpolation between order statistics.
double quantile(std::vector<double> values, double q);

}  // namespace kdistill::bench
#pragma GCC visibility pop
