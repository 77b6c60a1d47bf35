// `kdistill bench`: latency and throughput of a teacher and a student side by side (and of the
// student exported to the Eigen runtime), with accuracy and agreement when data is given.
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>

#include <fmt/format.h>
#include <torch/torch.h>

#include "commands.h"
#include "cli_util.h"
#include "kdistill/kdistill.h"

namespace kdistill::cli {
namespace {

struct BenchArgs {
  std::string teacher, student, input_shape = "1,28,28", batches = "1,8,64,256", device = "cpu", data, json, csv;
  std::string runtimes = "torch", precision = "fp32";
  int threads = 0;
  int64_t iters = 1000;
  double min_seconds = 1.0;
  bool optimize = false;
  int64_t generate = 0;  // > 0: language models over this vocabulary; generation is measured
  int64_t prompt = 32, new_tokens = 64, runs = 5;
};

// `--generate V`: autoregressive generation of both language models at each batch size.
int run_generation_bench(const BenchArgs& a) {
  check(a.runtimes == "torch" && !a.optimize && a.data.empty() && a.precision == "fp32", "--generate measures the "
        "TorchScript models as loaded, in fp32: it takes no --runtimes, --optimize, --data or --precision");
  const auto device = parse_device(a.device);
  bench::Report report;
  report.device = a.device;
  report.threads = a.threads > 0 ? a.threads : torch::get_num_threads();
  const auto batches = parse_int_list("--batch", a.batches);
  for (const auto& [name, path] : {std::pair{"teacher", a.teacher}, std::pair{"student", a.student}}) {
    auto model = Model::load_torchscript(path, device);
    bench::ModelReport m;
    m.arch = std::filesystem::path(path).filename().string();
    m.params = model.num_parameters();
    for (auto b : batches) {
      m.generation.push_back(bench::measure_generation(model, a.generate,
                                                       bench::GenerationOptions()
                                                           .batch(b)
                                                           .prompt(a.prompt)
                                                           .new_tokens(a.new_tokens)
                                                           .runs(a.runs)
                                                           .device(device)
                                                           .threads(a.threads)));
    }
    m.tokens_per_s = m.generation.front().tokens_per_s;
    report.models.emplace_back(name, m);
  }
  std::cout << "| model | params | batch | method | prefill p50 / p99 ms | decode p50 / p99 ms per token | tokens/s "
               "| speed-up |\n|---|---:|---:|---|---:|---:|---:|---:|\n";
  for (const auto& [name, m] : report.models) {
    for (size_t i = 0; i < m.generation.size(); ++i) {
      const auto& g = m.generation[i];
      std::cout << fmt::format("| {} | {} | {} | {} | {:.3f} / {:.3f} | {:.3f} / {:.3f} | {:.0f} | {:.2f}x |\n",
                               name, m.params, g.batch, g.method, g.prefill_p50_ms, g.prefill_p99_ms, g.decode_p50_ms,
                               g.decode_p99_ms, g.tokens_per_s,
                               g.tokens_per_s / report.models[0].second.generation[i].tokens_per_s);
    }
  }
  if (!a.json.empty()) io::atomic_write_string(a.json, bench::to_json(report));
  return 0;
}

int run_bench(const BenchArgs& a) {
  if (a.generate > 0) return run_generation_bench(a);
  const std::string runtimes = "," + a.runtimes + ",";
  const auto device = parse_device(a.device);
  auto o = bench::CompareOptions()
               .input_shape(parse_int_list("--input-shape", a.input_shape))
               .batch_sizes(parse_int_list("--batch", a.batches))
               .device(device)
               .latency(bench::LatencyOptions().min_iters(a.iters).min_seconds(a.min_seconds).threads(a.threads))
               .libtorch(runtimes.find(",torch,") != std::string::npos)
               .eigen(runtimes.find(",eigen,") != std::string::npos);
  check(o.libtorch() || o.eigen(), "--runtimes: expected a comma-separated subset of torch,eigen, got \"", a.runtimes,
        "\"");
  const auto precision = parse_precision(a.precision, "--precision");
  check(precision == Precision::kFloat32 || (!o.eigen() && !a.optimize), "--precision bf16 measures LibTorch models "
        "as they are: use it with --runtimes torch and without --optimize");
  warn_if_bf16_is_slow(precision, device);
  auto teacher_fp32 = Model::load_torchscript(a.teacher, device);
  auto student_fp32 = Model::load_torchscript(a.student, device);
  auto teacher = teacher_fp32.with_precision(precision);
  auto student = student_fp32.with_precision(precision);
  const int64_t teacher_params = teacher.num_parameters(), student_params = student.num_parameters();
  if (a.optimize) {  // both, so that the speed-up compares like with like
    // The Eigen runtime is exported from the student's layers, which freezing removes.
    check(!o.eigen(), "--optimize measures LibTorch models only; use it with --runtimes torch (the Eigen runtime "
          "runs the student as exported)");
    teacher = teacher.optimized_for_inference();
    student = student.optimized_for_inference();
  }
  data::TensorDataset ds;
  if (!a.data.empty()) ds = data::load_spec(a.data, "test");
  auto report = bench::compare(teacher, student, o, a.data.empty() ? nullptr : &ds);
  report.precision = to_string(precision);
  if (precision != Precision::kFloat32 && !a.data.empty()) {
    // bf16 serving is a deployment choice: each model's accuracy against itself in fp32.
    Model* pairs[][2] = {{&teacher_fp32, &teacher}, {&student_fp32, &student}};
    for (size_t i = 0; i < 2; ++i) {
      auto fp32 = predict(*pairs[i][0], ds), low = predict(*pairs[i][1], ds);
      report.models[i].second.accuracy_fp32 = metrics::accuracy(fp32, ds.targets());
      report.models[i].second.agreement_with_fp32 = metrics::agreement(low, fp32);
    }
  }
  const std::string note = a.optimize ? " (optimized)" : "";
  report.models[0].second.params = teacher_params;  // freezing turns parameters into constants
  report.models[1].second.params = student_params;
  report.models[0].second.arch = std::filesystem::path(a.teacher).filename().string() + note;
  for (size_t i = 1; i < report.models.size(); ++i) {
    report.models[i].second.arch =
        std::filesystem::path(a.student).filename().string() + (i == 2 ? " (eigen)" : note);
  }
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::cout << bench::to_markdown(report)
            << fmt::format("peak resident memory of this process: {} MiB\n", usage.ru_maxrss / 1024);
  if (!a.json.empty()) io::atomic_write_string(a.json, bench::to_json(report));
  if (!a.csv.empty()) io::atomic_write_string(a.csv, bench::to_csv(report));
  return 0;
}

}  // namespace

Run add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  app.add_option("--teacher", a->teacher, "TorchScript teacher")->required();
  app.add_option("--student", a->student, "TorchScript student")->required();
  app.add_option("--input-shape", a->input_shape, "Shape of one input")->capture_default_str();
  app.add_option("--batch", a->batches, "Batch sizes")->capture_default_str();
  app.add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--threads", a->threads, "Intra-op threads (0: LibTorch's default)")->capture_default_str();
  app.add_option("--iters", a->iters, "Timed calls at batch 1 (B: iters/B, at least 20)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--min-seconds", a->min_seconds, "Timed seconds per model and batch size at least")
      ->capture_default_str();
  app.add_option("--runtimes", a->runtimes, "torch, eigen or torch,eigen (eigen: the student exported to the "
                                            "LibTorch-free runtime)")
      ->capture_default_str();
  app.add_option("--data", a->data, "Also measure accuracy and agreement on this data's test split");
  app.add_option("--precision", a->precision, "fp32 or bf16: the precision both models compute in (accuracy with "
                 "--data is measured in it too)")->capture_default_str();
  app.add_flag("--optimize", a->optimize,
               "Freeze both TorchScript models and run LibTorch's optimize_for_inference first, as for serving");
  app.add_option("--generate", a->generate, "Language models over a vocabulary of V tokens: measure greedy "
                 "generation (prefill, per-token decode, tokens/s) at each --batch size instead")
      ->check(CLI::PositiveNumber);
  app.add_option("--prompt", a->prompt, "--generate: prompt tokens")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--new-tokens", a->new_tokens, "--generate: tokens generated per run")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--runs", a->runs, "--generate: timed generations per batch size")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--json", a->json, "Write the report JSON here");
  app.add_option("--csv", a->csv, "Write one CSV row per model and batch size here");
  return [a] { return run_bench(*a); };
}

}  // namespace kdistill::cli
