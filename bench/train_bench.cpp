// Training throughput through DistillTrainer::fit on Fashion-MNIST-shaped data (random pixels, so
// the suite needs no data set): the MLP-64 student from labels, the same student distilled from
// a live 784-1200-1200-10 teacher, and that teacher itself. Compare with bench/python_reference.py.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <torch/torch.h>

#include "bench_common.h"
#include "kdistill/models/builders.h"
#include "kdistill/teachers/cache.h"
#include "kdistill/teachers/teacher.h"
#include "kdistill/train/trainer.h"

namespace {

constexpr int64_t kBatch = 128;
// Like bench/python_reference.py: 20 warm-up steps, then timed steps (300 by default;
// KDISTILL_BENCH_STEPS overrides it, e.g. for the ctest smoke run).
constexpr int64_t kWarmupSteps = 20;

int64_t timed_steps() {
  const char* env = std::getenv("KDISTILL_BENCH_STEPS");
  return env != nullptr && std::atoll(env) > 0 ? std::atoll(env) : 300;
}

const kdistill::data::TensorDataset& fashion_shaped() {
  static const kdistill::data::TensorDataset ds = [] {
    torch::manual_seed(0);
    return kdistill::data::TensorDataset(torch::randn({60000, 1, 28, 28}), torch::randint(0, 10, {60000}), 10);
  }();
  return ds;
}

// The teacher's logits over the whole set, cached once to HDF5 (offline distillation).
std::shared_ptr<kdistill::Teacher> cached_teacher() {
  static std::shared_ptr<kdistill::Teacher> cached = [] {
    torch::manual_seed(2);
    kdistill::ModelTeacher live(kdistill::Model(kdistill::mlp(784, {1200, 1200}, 10, 0.2)));
    const auto path = (std::filesystem::temp_directory_path() / "kdistill-train-bench-cache.h5").string();
    kdistill::cache_teacher_logits(live, fashion_shaped(), path);
    auto t = std::make_shared<kdistill::CachedTeacher>(path);
    std::filesystem::remove(path);
    return t;
  }();
  return cached;
}

// 20 warm-up steps, then the timed steps, of `student` distilled from `teacher` (or from labels),
// each iteration one fit() through a fresh trainer (step 0 again); only the steps after the
// warm-up are timed, from the step callback, as the Python reference times its loop.
void run_steps(benchmark::State& state, kdistill::Model& student, const std::shared_ptr<kdistill::Teacher>& t,
               const kdistill::PrecisionOptions& precision) {
  const int threads = static_cast<int>(state.range(1));
  const int64_t steps = timed_steps();
  auto opts = kdistill::TrainerOptions()
                  .epochs(1)
                  .max_steps(kWarmupSteps + steps)
                  .batch_size(kBatch)
                  .lr(0.01)
                  .momentum(0.9)
                  .threads(threads)
                  .progress(false)
                  .precision(precision)
                  .loss(kdistill::KDLossOptions().temperature(4).alpha(0.9));
  double seconds = 0;
  for (auto _ : state) {
    kdistill::DistillTrainer trainer(student, t, opts);
    std::chrono::steady_clock::time_point start, end;
    trainer.on_step([&](const kdistill::StepInfo& info) {
      if (info.step == kWarmupSteps) start = std::chrono::steady_clock::now();
      if (info.step == kWarmupSteps + steps) end = std::chrono::steady_clock::now();
    });
    trainer.fit(fashion_shaped());
    const double s = std::chrono::duration<double>(end - start).count();
    state.SetIterationTime(s);
    seconds += s;
  }
  state.counters["train_samples_per_s"] =
      static_cast<double>(kBatch * steps) * static_cast<double>(state.iterations()) / seconds;
  state.counters["timed_steps"] = static_cast<double>(steps);
}

// kind 0: student from labels; 1: student distilled from a live teacher; 2: the teacher;
// 3: student distilled from cached teacher logits.
void run_kind(benchmark::State& state, const kdistill::PrecisionOptions& precision) {
  const int kind = static_cast<int>(state.range(0));
  torch::manual_seed(1);
  auto teacher = kdistill::Model(kdistill::mlp(784, {1200, 1200}, 10, 0.2), "mlp:1200,1200");
  auto student = kind == 2 ? teacher : kdistill::Model(kdistill::mlp(784, {64}, 10), "mlp:64");
  std::shared_ptr<kdistill::Teacher> t;
  if (kind == 1) t = std::make_shared<kdistill::ModelTeacher>(kdistill::Model(kdistill::mlp(784, {1200, 1200}, 10, 0.2)));
  if (kind == 3) t = cached_teacher();
  run_steps(state, student, t, precision);
}

void BM_TrainSteps(benchmark::State& state) { run_kind(state, {}); }
BENCHMARK(BM_TrainSteps)
    ->ArgNames({"kind", "threads"})
    ->ArgsProduct({{0, 1, 2, 3}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();

// What the trainer costs over a hand-written LibTorch loop: the MLP-64 student from labels (kind 0
// above) trained by the loop a user would write, the one bench/python_reference.py runs: shuffled
// rows gathered with one index per batch, cross-entropy, SGD with momentum, the loss read each step.
// Same data, seeds, batch, steps and timing as BM_TrainSteps.
void BM_BareLibTorchSteps(benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(0)));
  const auto& data = fashion_shaped();
  const auto& x = data.features();
  const auto& y = data.targets();
  const int64_t steps = timed_steps();
  double seconds = 0;
  for (auto _ : state) {
    torch::manual_seed(1);
    torch::nn::Sequential net(torch::nn::Flatten(), torch::nn::Linear(784, 64), torch::nn::ReLU(),
                              torch::nn::Linear(64, 10));
    torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    const auto order = torch::randperm(x.size(0));
    auto step = [&](int64_t i) {
      auto idx = order.narrow(0, (i * kBatch) % (x.size(0) - kBatch), kBatch);
      auto loss = torch::nn::functional::cross_entropy(net->forward(x.index_select(0, idx)), y.index_select(0, idx));
      opt.zero_grad();
      loss.backward();
      opt.step();
      return loss.item<double>();
    };
    for (int64_t i = 0; i < kWarmupSteps; ++i) step(i);
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) benchmark::DoNotOptimize(step(i));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(s);
    seconds += s;
  }
  state.counters["train_samples_per_s"] =
      static_cast<double>(kBatch * steps) * static_cast<double>(state.iterations()) / seconds;
}
BENCHMARK(BM_BareLibTorchSteps)->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseManualTime();

// The same runs in bf16 on a CPU with AVX512-BF16 or AMX (or CUDA): kind 1 with the teacher in
// bf16 (the student in fp32); kind 2, the teacher trained under bf16 autocast on fp32 weights;
// kind 0, the student from labels under bf16 autocast; kind 3 as kind 0, from cached logits.
void BM_TrainStepsBf16(benchmark::State& state) {
  using kdistill::Precision;
  run_kind(state, state.range(0) == 1 ? kdistill::PrecisionOptions().teacher(Precision::kBFloat16)
                                      : kdistill::PrecisionOptions().student(Precision::kBFloat16));
}
BENCHMARK(BM_TrainStepsBf16)
    ->ArgNames({"kind", "threads"})
    ->ArgsProduct({{0, 1, 2, 3}, {2}})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();

// Teacher inference (eval mode, no grad): the per-batch cost a live teacher adds to distillation,
// and what `kdistill cache-teacher` pays per batch; bf16:1 runs the teacher in bf16.
void BM_TeacherInference(benchmark::State& state) {
  torch::set_num_threads(static_cast<int>(state.range(1)));
  torch::manual_seed(1);
  kdistill::ModelTeacher teacher(kdistill::Model(kdistill::mlp(784, {1200, 1200}, 10, 0.2)));
  teacher.set_precision(state.range(2) ? kdistill::Precision::kBFloat16 : kdistill::Precision::kFloat32);
  const int64_t batch = state.range(0);
  auto x = torch::randn({batch, 1, 28, 28});
  auto idx = torch::arange(batch);
  for (auto _ : state) benchmark::DoNotOptimize(teacher.logits(x, idx).data_ptr());
  kdistill::benchmarks::count_samples(state, batch);
}
BENCHMARK(BM_TeacherInference)->ArgNames({"batch", "threads", "bf16"})->ArgsProduct({{1, 128, 256}, {2}, {0, 1}});

}  // namespace

KDISTILL_BENCHMARK_MAIN();
