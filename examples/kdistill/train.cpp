// `kdistill train`, `kdistill cache-teacher` and `kdistill eval`: configured runs, offline
// teacher logits, and evaluation of saved models.
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <thread>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "commands.h"
#include "cli_util.h"
#include "launch.h"
#include "kdistill/kdistill.h"
#include "kdistill/runtime/runtime.h"

namespace kdistill::cli {

Run add_train(CLI::App& app) {
  struct Args {
    std::string config, resume;
    int nproc = 1;
  };
  auto a = std::make_shared<Args>();
  auto* config = app.add_option("--config", a->config, "Run configuration (YAML)");
  auto* resume = app.add_option("--resume", a->resume, "Continue the interrupted run in this output directory");
  config->excludes(resume);
  app.add_option("--nproc", a->nproc,
                 "Start this many data-parallel workers on this machine (c10d Gloo over 127.0.0.1); under torchrun "
                 "or another launcher leave it out: RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT are read")
      ->capture_default_str();
  return [a] {
    if (a->config.empty() && a->resume.empty()) throw CLI::RequiredError("--config or --resume");
    if (a->nproc < 1 || a->nproc > 64) throw CLI::ValidationError("--nproc", "must be from 1 to 64");
    const auto env = distributed_from_env();
    if (a->nproc > 1) {
      if (std::getenv("WORLD_SIZE") != nullptr) {
        throw CLI::ValidationError("--nproc", "WORLD_SIZE is set: a launcher already started this worker; leave "
                                              "--nproc out");
      }
      if (!a->config.empty()) load_config(a->config);  // a bad config fails once, here, not in every worker
      return launch_workers(a->nproc);
    }
    if (env.world_size() > 1) {
      logger()->set_pattern(fmt::format("[%Y-%m-%d %H:%M:%S.%e] [kdistill rank {}] [%l] %v", env.rank()));
    }
    auto result = a->resume.empty() ? run_config(load_config(a->config)) : resume_run(a->resume);
    if (env.rank() == 0) {
      std::cout << result.report_json;
      std::cout << "outputs in " << result.output_dir << "\n";
    }
    return 0;
  };
}

Run add_cache_teacher(CLI::App& app) {
  struct Args {
    std::string teacher, data, out, split = "train", device = "cpu", precision = "fp32", format = "dense";
    int64_t batch_size = 256, top_k = 0, samples = 0;
    double temperature = 1.0;
    uint64_t seed = 0;
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  };
  auto a = std::make_shared<Args>();
  app.add_option("--precision", a->precision, "fp32 or bf16 (the teacher's compute; logits are stored as float32)")
      ->capture_default_str();
  app.add_option("--threads", a->threads, "Intra-op threads (default: every core)")->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--teacher", a->teacher, "TorchScript teacher")->required();
  app.add_option("--data", a->data, "Data: idx:DIR, hdf5:FILE[:FEATURES:LABELS] or a directory")->required();
  app.add_option("--out", a->out, "HDF5 file to write")->required();
  app.add_option("--split", a->split, "train or test")->capture_default_str();
  app.add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--batch-size", a->batch_size, "Batch size")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--format", a->format,
                 "dense (every logit), topk (the top-k log-probabilities and the tail mass) or sampled (draws from "
                 "the teacher: an unbiased estimate)")
      ->capture_default_str();
  app.add_option("--top-k", a->top_k, "Classes kept per sample with --format topk");
  app.add_option("--samples", a->samples, "Classes drawn per sample with --format sampled");
  auto* temperature = app.add_option("--temperature", a->temperature,
                                     "With --format sampled: the temperature drawn at (training must use it)");
  auto* seed = app.add_option("--seed", a->seed, "With --format sampled: the seed of the draws");
  return [a, temperature, seed] {
    check(a->format == "dense" || a->format == "topk" || a->format == "sampled",
          "--format: expected dense, topk or sampled, got \"", a->format, "\"");
    check(a->format == "topk" || a->top_k == 0, "--top-k is for --format topk");
    check(a->format != "topk" || a->top_k >= 1, "--format topk needs --top-k K (K >= 1)");
    check(a->format == "sampled" || a->samples == 0, "--samples is for --format sampled");
    check(a->format != "sampled" || a->samples >= 1, "--format sampled needs --samples S (S >= 1)");
    check(a->format == "sampled" || (temperature->count() == 0 && seed->count() == 0),
          "--temperature and --seed are for --format sampled");
    check(a->temperature > 0 && std::isfinite(a->temperature), "--temperature must be > 0, got ", a->temperature);
    const auto device = parse_device(a->device);
    const auto precision = parse_precision(a->precision, "--precision");
    warn_if_bf16_is_slow(precision, device);
    set_threads(a->threads);
    auto dataset = data::load_spec(a->data, a->split);
    ModelTeacher teacher(Model::load_torchscript(a->teacher, device));
    teacher.set_precision(precision);
    const auto sha = io::sha256_file(a->teacher);
    const auto started = std::chrono::steady_clock::now();
    auto info = cache_teacher(teacher, dataset, a->out,
                              CacheOptions()
                                  .format(a->format)
                                  .top_k(a->top_k)
                                  .samples(a->samples)
                                  .temperature(a->temperature)
                                  .seed(a->seed)
                                  .teacher_sha256(sha)
                                  .batch_size(a->batch_size));
    std::string what = "logits";
    if (info.format == "topk") what = fmt::format("top-{} of", info.k);
    if (info.format == "sampled") what = fmt::format("{} draws at T = {:g} from", info.draws, info.temperature);
    // The teacher's passes, hashing the data and writing the file: what --precision changes.
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::cout << fmt::format("wrote {}: {} [{}, {}], {:.1f} bytes per sample, data_sha256 {}\n", a->out, what,
                             info.samples, info.classes, info.bytes_per_row, info.data_sha256)
              << fmt::format("cached {} samples in {:.2f} s ({:.0f} samples/s)\n", info.samples, seconds,
                             info.samples / std::max(seconds, 1e-9));
    return 0;
  };
}

Run add_eval(CLI::App& app) {
  struct Args {
    std::string model, data, teacher, split = "test", device = "cpu", json;
  };
  auto a = std::make_shared<Args>();
  app.add_option("--model", a->model, "TorchScript model, or a .h5 student written by kdistill export")->required();
  app.add_option("--data", a->data, "Data: idx:DIR, hdf5:FILE[:FEATURES:LABELS] or a directory")->required();
  app.add_option("--teacher", a->teacher, "TorchScript teacher, for agreement");
  app.add_option("--split", a->split, "train or test")->capture_default_str();
  app.add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--json", a->json, "Also write the metrics as JSON here");
  return [a] {
    const auto device = parse_device(a->device);
    auto dataset = data::load_spec(a->data, a->split);
    torch::Tensor teacher_logits;
    if (!a->teacher.empty()) {
      auto teacher = Model::load_torchscript(a->teacher, device);
      teacher_logits = predict(teacher, dataset);
    }
    // A .h5 model is an exported student: it is evaluated through the Eigen runtime.
    const bool exported = a->model.size() > 3 && a->model.compare(a->model.size() - 3, 3, ".h5") == 0;
    torch::Tensor logits;
    if (exported) {
      auto rt = runtime::Model::load(a->model);
      auto x = dataset.features().to(torch::kFloat).contiguous();
      check(x.numel() == dataset.size() * rt.input_size(), "eval: ", a->model, " takes ", rt.input_size(),
            " values per sample but the data has ", x.numel() / std::max<int64_t>(1, dataset.size()));
      logits = torch::empty({dataset.size(), rt.num_classes()}, torch::kFloat);
      rt.predict(x.data_ptr<float>(), static_cast<int>(dataset.size()), logits.data_ptr<float>());
    } else {
      auto model = Model::load_torchscript(a->model, device);
      logits = predict(model, dataset);
    }
    check(logits.dim() == 2 && logits.size(1) == dataset.num_classes(), "eval: ", a->model, " returns shape ",
          logits.sizes(), " but the data set has ", dataset.num_classes(), " classes");
    auto e = metrics::evaluate_logits(logits, dataset.targets(), teacher_logits);
    nlohmann::ordered_json j = {{"model", a->model}, {"samples", e.samples},         {"accuracy", e.accuracy},
                                {"top5_accuracy", e.top5_accuracy}, {"nll", e.nll}, {"ece", e.ece}};
    if (e.agreement >= 0) j["agreement"] = e.agreement;
    std::cout << fmt::format("accuracy {:.4f}  top-5 {:.4f}  nll {:.4f}  ece {:.4f}", e.accuracy, e.top5_accuracy, e.nll,
                             e.ece)
              << (e.agreement >= 0 ? fmt::format("  agreement {:.4f}", e.agreement) : "") << "\n";
    if (!a->json.empty()) io::atomic_write_string(a->json, j.dump(2) + "\n");
    return 0;
  };
}

}  // namespace kdistill::cli
