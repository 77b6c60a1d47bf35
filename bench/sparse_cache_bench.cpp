// Sparse teacher caches at a language model's vocabulary (V = 32,000 by default), on synthetic
// tokens: bytes per token of top-k and sampled caches, the cost of writing them, how fast a
// streamed cache serves training against the teacher's forward, training throughput from each,
// and the gradient error of the sampled estimator against the number of draws (with top-k's bias
// beside it). Writes one JSON file; bench/run_sparse_cache_bench.sh runs it on an idle machine.
//
// The teacher is a 256-1024-V MLP over random token features, plus a Zipf prior over the
// vocabulary (log p ~ -1.1 log rank), so that its distributions are peaked like a language
// model's rather than near-uniform.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "kdistill/core/system.h"
#include "kdistill/data/batch_iterator.h"
#include "kdistill/losses/sparse.h"
#include "kdistill/models/model.h"
#include "kdistill/teachers/cache.h"
#include "kdistill/train/trainer.h"

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::ordered_json;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Args {
  int64_t tokens = 16384, vocab = 32000, train_steps = 24, batch = 256;
  int threads = 2;
  std::string out = "sparse_cache.json", dir;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sparse_cache_bench: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      return std::string(argv[++i]);
    };
    if (k == "--tokens") a.tokens = std::stoll(next());
    else if (k == "--vocab") a.vocab = std::stoll(next());
    else if (k == "--train-steps") a.train_steps = std::stoll(next());
    else if (k == "--threads") a.threads = std::stoi(next());
    else if (k == "--out") a.out = next();
    else if (k == "--dir") a.dir = next();
    else {
      std::fprintf(stderr, "usage: sparse_cache_bench [--tokens N] [--vocab V] [--train-steps S] [--threads T] "
                           "[--dir SCRATCH] [--out FILE.json]\n");
      std::exit(2);
    }
  }
  return a;
}

// 256-1024-V with a Zipf prior added to the last layer's bias.
torch::nn::Sequential make_teacher(int64_t vocab) {
  torch::manual_seed(1);
  torch::nn::Sequential m(torch::nn::Linear(256, 1024), torch::nn::ReLU(), torch::nn::Linear(1024, vocab));
  torch::NoGradGuard no_grad;
  auto last = m->ptr<torch::nn::LinearImpl>(2);
  last->weight.mul_(4);
  auto rank = torch::randperm(vocab, torch::kLong).to(torch::kFloat) + 1;
  last->bias.copy_(-1.1 * rank.log());
  return m;
}

torch::nn::Sequential make_student(int64_t vocab) {
  torch::manual_seed(2);
  return torch::nn::Sequential(torch::nn::Linear(256, 128), torch::nn::ReLU(), torch::nn::Linear(128, vocab));
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const bool tuned = kdistill::tune_allocator();  // as the CLI and the other benches run
  kdistill::set_threads(a.threads);
  const auto start = Clock::now();
  const std::string dir = a.dir.empty() ? (std::filesystem::temp_directory_path() / "kdistill_sparse_bench").string() : a.dir;
  std::filesystem::create_directories(dir);
  torch::manual_seed(0);
  auto x = torch::randn({a.tokens, 256});
  auto teacher_model = make_teacher(a.vocab);
  kdistill::ModelTeacher teacher{kdistill::Model(teacher_model)};
  auto y = torch::zeros({a.tokens}, torch::kLong);  // labels are not used: KD only
  kdistill::data::TensorDataset ds(x, y, a.vocab, "synthetic-tokens");
  json out;
  const auto info = kdistill::system_info();
  out["conditions"] = {{"what", "bench/sparse_cache_bench.cpp on synthetic tokens"},
                       {"tokens", a.tokens},
                       {"vocab", a.vocab},
                       {"threads", a.threads},
                       {"allocator", tuned ? "glibc, kdistill::tune_allocator()" : "default"},
                       {"torch", info.torch_version},
                       {"blas", info.blas_kind},
                       {"cpu_bf16", info.cpu_bf16},
                       {"omp_wait_policy", std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : "unset"},
                       {"teacher", "256-1024-V MLP + Zipf prior, fp32"},
                       {"student", "256-128-V MLP, fp32"}};

  // The teacher: its forward rate, and what its distributions look like.
  {
    torch::NoGradGuard no_grad;
    auto probe = x.narrow(0, 0, std::min<int64_t>(a.tokens, 1024));
    teacher.logits(probe.narrow(0, 0, std::min<int64_t>(probe.size(0), 64)), {});  // warm-up
    const auto t0 = Clock::now();
    torch::Tensor logits;
    for (int64_t b = 0; b < probe.size(0); b += a.batch) {
      logits = teacher.logits(probe.narrow(0, b, std::min(a.batch, probe.size(0) - b)), {});
    }
    const double rate = static_cast<double>(probe.size(0)) / seconds_since(t0);
    auto lp = torch::log_softmax(teacher.logits(probe, {}), 1);
    const double entropy = -(lp.exp() * lp).sum(1).mean().item<double>();
    json mass;
    for (int64_t k : {16, 64}) {
      mass[std::to_string(k)] = std::get<0>(lp.topk(k, 1)).exp().sum(1).mean().item<double>();
    }
    out["teacher"] = {{"forward_tokens_per_s", rate}, {"entropy_nats", entropy}, {"topk_mass", mass}};
    std::printf("teacher: %.0f tokens/s, entropy %.2f nats\n", rate, entropy);
  }

  // Write the caches (each pass runs the teacher again: the time includes its forward).
  struct Format {
    std::string name;
    kdistill::CacheOptions options;
  };
  const std::vector<Format> formats = {
      {"topk16", kdistill::CacheOptions().format("topk").top_k(16)},
      {"topk64", kdistill::CacheOptions().format("topk").top_k(64)},
      {"sampled64", kdistill::CacheOptions().format("sampled").samples(64).seed(1)},
  };
  json caches;
  for (const auto& f : formats) {
    const std::string path = dir + "/" + f.name + ".h5";
    const auto t0 = Clock::now();
    auto ci = kdistill::cache_teacher(teacher, ds, path, kdistill::CacheOptions(f.options).batch_size(a.batch));
    const double write_s = seconds_since(t0);
    caches[f.name] = {{"bytes_per_token", ci.bytes_per_row},
                      {"fraction_of_dense_float32", ci.bytes_per_row / (4.0 * static_cast<double>(a.vocab))},
                      {"chunk_rows", ci.chunk_rows},
                      {"write_tokens_per_s", static_cast<double>(a.tokens) / write_s}};
    std::printf("%s: %.1f bytes/token, written at %.0f tokens/s\n", f.name.c_str(), ci.bytes_per_row,
                static_cast<double>(a.tokens) / write_s);

    // Streamed reads in the trainer's block-shuffled order, as training asks for them.
    kdistill::CachedTeacher streamed(path, kdistill::CacheReadOptions().stream(true));
    kdistill::data::BatchIterator it(ds, kdistill::data::BatchOptions().batch_size(a.batch).block_rows(streamed.block_rows()),
                                     0);
    std::vector<torch::Tensor> plan;
    for (int64_t i = 0; i < it.num_batches(); ++i) plan.push_back(it.indices(i));
    const auto r0 = Clock::now();
    streamed.plan(torch::cat(plan));
    for (int64_t i = 0; i < it.num_batches(); ++i) streamed.outputs(torch::Tensor(), it.indices(i));
    const double read_s = seconds_since(r0);
    const auto stats = streamed.stream_stats();
    caches[f.name]["streamed_read_tokens_per_s"] = static_cast<double>(a.tokens) / read_s;
    caches[f.name]["streamed_blocks_waited_for"] = stats.blocks_waited;
    caches[f.name]["streamed_blocks_read_ahead"] = stats.blocks_read;
    caches[f.name]["streamed_peak_mb"] = static_cast<double>(stats.peak_bytes) / (1 << 20);
    std::printf("  streamed read: %.0f tokens/s (with the dense stand-in logits)\n",
                static_cast<double>(a.tokens) / read_s);
  }
  caches["dense_float32_bytes_per_token"] = 4 * a.vocab;
  out["caches"] = caches;
  out["read_vs_teacher_forward"] = {
      {"topk64", caches["topk64"]["streamed_read_tokens_per_s"].get<double>() /
                     out["teacher"]["forward_tokens_per_s"].get<double>()},
      {"sampled64", caches["sampled64"]["streamed_read_tokens_per_s"].get<double>() /
                        out["teacher"]["forward_tokens_per_s"].get<double>()}};

  // Training throughput: the same student from the live teacher and from each streamed cache.
  json training;
  auto options = kdistill::TrainerOptions()
                     .progress(false)
                     .batch_size(a.batch)
                     .epochs(1)
                     .max_steps(a.train_steps)
                     .objective(std::make_shared<kdistill::KDObjective>(kdistill::KDLossOptions().temperature(1).alpha(1)));
  auto fit = [&](const std::string& name, std::shared_ptr<kdistill::Teacher> t) {
    kdistill::Model student(make_student(a.vocab));
    auto r = kdistill::DistillTrainer(student, std::move(t), options).fit(ds);
    training[name] = {{"samples_per_s", r.train_samples_per_s}, {"steps", r.steps}};
    std::printf("train from %s: %.0f tokens/s\n", name.c_str(), r.train_samples_per_s);
  };
  fit("live_teacher", std::make_shared<kdistill::ModelTeacher>(kdistill::Model(teacher_model)));
  for (const char* name : {"topk64", "sampled64"}) {
    fit(std::string(name) + "_streamed",
        std::make_shared<kdistill::CachedTeacher>(dir + "/" + name + ".h5", kdistill::CacheReadOptions().stream(true)));
  }
  out["training"] = training;
  std::printf("training done at %.0f s\n", seconds_since(start));

  // Gradient error against the dense KL's gradient (T = 1) on one batch of student logits.
  {
    const int64_t rows = std::min<int64_t>(a.tokens, 256);
    torch::Tensor t, s;
    {
      torch::NoGradGuard no_grad;
      t = teacher.logits(x.narrow(0, 0, rows), {});
      s = make_student(a.vocab)->forward(x.narrow(0, 0, rows));
    }
    const auto dense = torch::softmax(s, 1) - torch::softmax(t, 1);  // d KL(p || q) / d s
    const double norm = dense.norm().item<double>();
    auto grad_of = [&](const std::function<torch::Tensor(const torch::Tensor&)>& loss) {
      auto v = s.clone().requires_grad_();
      loss(v).sum().backward();
      return v.grad();
    };
    json sampled = json::array();
    auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
    for (int64_t draws : {1, 4, 16, 64, 256, 1024}) {
      const int repeats = 8;
      double err = 0;
      torch::Tensor mean = torch::zeros_like(dense);
      for (int r = 0; r < repeats; ++r) {
        auto targets = kdistill::sampled_targets(t, draws, 1.0, gen);
        auto g = grad_of([&](const torch::Tensor& v) { return kdistill::sampled_kl(v, targets); });
        err += (g - dense).norm().item<double>() / norm;
        mean += g / repeats;
      }
      sampled.push_back({{"draws", draws},
                         {"relative_gradient_error", err / repeats},
                         {"relative_error_of_the_mean_of_8", (mean - dense).norm().item<double>() / norm}});
    }
    json topk = json::array();
    for (int64_t k : {16, 64, 256}) {
      auto targets = kdistill::topk_targets(t, k);
      auto g = grad_of([&](const torch::Tensor& v) { return kdistill::sparse_divergence(v, targets); });
      topk.push_back({{"k", k}, {"relative_gradient_error", (g - dense).norm().item<double>() / norm}});
    }
    out["gradient_error"] = {{"tokens", rows}, {"sampled", sampled}, {"topk", topk}};
    std::printf("gradient errors done at %.0f s\n", seconds_since(start));
  }

  std::ofstream(a.out) << out.dump(2) << "\n";
  std::printf("wrote %s\n", a.out.c_str());
  return 0;
}
