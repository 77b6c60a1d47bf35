#include "kdistill/bench/latency.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/core/system.h"

namespace kdistill::bench {
namespace {
using Clock = std::chrono::steady_clock;

double elapsed_ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}
}  // namespace

double quantile(std::vector<double> values, double q) {
  check(!values.empty(), "quantile: no values");
  check(q >= 0 && q <= 1, "quantile: q must be in [0, 1], got ", q);
  std::sort(values.begin(), values.end());
  const double pos = q * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

LatencyStats measure(const std::function<void()>& call, int64_t batch, const LatencyOptions& o,
                     const std::function<void()>& sync) {
  check(batch >= 1, "bench::measure: batch must be >= 1, got ", batch);
  check(o.min_iters() >= 1 && o.min_seconds() >= 0 && o.max_seconds() > 0, "bench::measure: bad LatencyOptions");
  auto timed_call = [&] {
    const auto t0 = Clock::now();
    call();
    if (sync) sync();
    return elapsed_ms(t0);
  };
  LatencyStats s;
  s.batch = batch;
  s.threads = torch::get_num_threads();
  s.cold_ms = timed_call();
  const auto warm_start = Clock::now();
  for (int64_t i = 0; i < o.warmup_iters() || elapsed_ms(warm_start) < 1000.0 * o.warmup_seconds(); ++i) timed_call();

  const int64_t want = std::max<int64_t>(o.min_iters() / batch, 20);
  std::vector<double> times;
  times.reserve(static_cast<size_t>(want));
  const auto start = Clock::now();
  while (static_cast<int64_t>(times.size()) < want || elapsed_ms(start) < 1000.0 * o.min_seconds()) {
    times.push_back(timed_call());
    if (elapsed_ms(start) > 1000.0 * o.max_seconds()) break;
  }
  s.iters = static_cast<int64_t>(times.size());
  s.mean_ms = std::accumulate(times.begin(), times.end(), 0.0) / static_cast<double>(times.size());
  s.p50_ms = quantile(times, 0.50);
  s.p90_ms = quantile(times, 0.90);
  s.p99_ms = quantile(times, 0.99);
  s.max_ms = *std::max_element(times.begin(), times.end());
  s.iqr_ms = quantile(times, 0.75) - quantile(times, 0.25);
  s.samples_per_s = 1000.0 * static_cast<double>(batch) / s.mean_ms;
  return s;
}

std::vector<LatencyStats> measure_model(Model& model, const std::vector<int64_t>& sample_shape,
                                        const std::vector<int64_t>& batch_sizes, const torch::Device& device,
                                        const LatencyOptions& options) {
  check(model.defined(), "bench::measure_model: the model is empty");
  check(!batch_sizes.empty(), "bench::measure_model: no batch sizes");
  for (auto b : batch_sizes) check(b >= 1, "bench::measure_model: batch sizes must be >= 1, got ", b);
  // The caller's thread count and training mode come back however the measurement ends.
  struct RestoreThreads {
    int threads;
    ~RestoreThreads() { torch::set_num_threads(threads); }
  } restore_threads{torch::get_num_threads()};
  TrainingModeGuard<Model> eval(model, false);
  set_threads(options.threads());
  torch::NoGradGuard no_grad;
  model.to(device);
  std::function<void()> sync;
  if (device.is_cuda()) sync = [idx = device.index()] { torch::cuda::synchronize(idx); };
  std::vector<LatencyStats> out;
  for (auto b : batch_sizes) {
    std::vector<int64_t> shape = {b};
    shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
    auto input = torch::randn(shape, torch::TensorOptions().device(device));
    out.push_back(measure([&] { (void)model.forward(input); }, b, options, sync));
  }
  return out;
}

}  // namespace kdistill::bench
