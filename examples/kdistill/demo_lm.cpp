// `kdistill demo --task lm`: language-model distillation on real English text. A byte-level
// transformer teacher learns Debian's fortunes; a smaller student learns the same text twice with
// the same seed, initialisation and steps: from the text alone, and from the teacher's next-byte
// distributions. Whole files are held out as the test text. Prints bits per byte, agreement with
// the teacher, generation speed and the speed-up.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "demo_lm.h"
#include "kdistill/kdistill.h"

namespace kdistill::cli {
namespace fs = std::filesystem;

const std::vector<std::string> kHeldOutFortunes = {"kids", "law"};

namespace {

// The text files of a fortunes-style directory: regular files, no `.dat` index, no `.u8` link.
std::vector<std::string> text_files(const std::string& dir) {
  check(fs::is_directory(dir), "demo --task lm: --data ", dir, " is not a directory (install Debian's fortunes "
        "package, or give a directory of text files)");
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && !e.is_symlink() && e.path().extension() != ".dat") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TrainerOptions lm_options(const LmDemoArgs& a, int64_t epochs, double lr) {
  return TrainerOptions()
      .epochs(epochs)
      .batch_size(a.batch_size)
      .optimizer("adamw")
      .lr(lr)
      .weight_decay(0.01)
      .schedule("cosine")
      .warmup_steps(a.warmup_steps)
      .grad_clip_norm(1.0)
      .seed(a.seed)
      .threads(a.threads)
      .device(a.device)
      .log_every(0);
}

double bits(const metrics::Evaluation& e) { return e.nll / std::log(2.0); }

// `--teacher-cache`: "dense", "topk:K" or "sampled:S" as cache options; throws naming the flag.
CacheOptions cache_options(const std::string& spec) {
  const auto colon = spec.find(':');
  const auto kind = spec.substr(0, colon);
  const auto number = colon == std::string::npos ? std::string() : spec.substr(colon + 1);
  const bool counted = kind == "topk" || kind == "sampled";
  check((kind == "dense" && number.empty()) || (counted && !number.empty()), "demo --task lm: --teacher-cache must be "
        "dense, topk:K or sampled:S, got \"", spec, "\"");
  if (kind == "dense") return CacheOptions();
  int64_t n = 0;
  try {
    size_t used = 0;
    n = std::stoll(number, &used);
    check(used == number.size(), "");
  } catch (const std::exception&) {
    fail("demo --task lm: --teacher-cache: ", number, " is not a whole number");
  }
  check(n >= 1, "demo --task lm: --teacher-cache: ", kind, " needs a count >= 1, got ", n);
  return kind == "topk" ? CacheOptions().format("topk").top_k(n) : CacheOptions().format("sampled").samples(n);
}

}  // namespace

int run_lm_demo(const LmDemoArgs& a) {
  check(a.length >= 2, "demo --task lm: --length must be >= 2, got ", a.length);
  check(a.temperature > 0, "demo --task lm: --temperature must be > 0, got ", a.temperature);
  check(a.alpha >= 0 && a.alpha <= 1, "demo --task lm: --alpha must be in [0, 1], got ", a.alpha);
  check(a.lr > 0 && a.teacher_lr > 0, "demo --task lm: --lr and --teacher-lr must be > 0");
  check(a.max_bytes >= 0, "demo --task lm: --max-bytes must be >= 0, got ", a.max_bytes);
  try {  // an unknown --divergence fails before anything trains
    divergence(torch::zeros({1, 2}), torch::zeros({1, 2}), DivergenceOptions().kind(a.divergence));
  } catch (const Error& e) {
    fail("demo --task lm: --divergence: ", e.what());
  }
  for (const auto& [flag, spec] : {std::pair{"--teacher", a.teacher}, std::pair{"--student", a.student}}) {
    check(spec.rfind("transformer:", 0) == 0 || spec.rfind("gru:", 0) == 0, "demo --task lm: ", flag,
          " must be a language model, transformer:DIM,LAYERS,HEADS or gru:HIDDEN[,LAYERS], got \"", spec, "\"");
  }
  const auto device = parse_device(a.device);
  const auto cache_opts = a.teacher_cache.empty() ? CacheOptions() : cache_options(a.teacher_cache);
  check(cache_opts.format() != "sampled" || a.divergence == "kl", "demo --task lm: --teacher-cache ", a.teacher_cache,
        " estimates the kl divergence only, not --divergence ", a.divergence);
  if (!a.report.empty()) {
    const auto dir = fs::absolute(a.report).parent_path();
    check(fs::is_directory(dir), "demo: --report: directory ", dir.string(), " does not exist");
  }
  set_threads(a.threads);
  std::vector<std::string> train_files, test_files;
  for (const auto& f : text_files(a.data)) {
    const auto name = fs::path(f).filename().string();
    const bool held_out = std::find(kHeldOutFortunes.begin(), kHeldOutFortunes.end(), name) != kHeldOutFortunes.end();
    (held_out ? test_files : train_files).push_back(f);
  }
  check(!test_files.empty() && !train_files.empty(), "demo --task lm: ", a.data, " must hold the held-out files ",
        kHeldOutFortunes[0], " and ", kHeldOutFortunes[1], " and at least one other text file");
  auto train_bytes = data::read_bytes(train_files), test_bytes = data::read_bytes(test_files);
  if (a.max_bytes > 0) {
    // Short runs (tests, smoke checks): the first bytes of each part, in proportion.
    train_bytes = train_bytes.narrow(0, 0, std::min(train_bytes.size(0), a.max_bytes));
    test_bytes = test_bytes.narrow(0, 0, std::min(test_bytes.size(0), std::max<int64_t>(a.max_bytes / 8, a.length + 1)));
  }
  auto train = data::text_windows(train_bytes, a.length, 256, "fortunes/train");
  auto test = data::text_windows(test_bytes, a.length, 256, "fortunes/test");
  logger()->info("text: {} training bytes in {} files, {} held-out bytes ({}), windows of {}", train_bytes.size(0),
                 train_files.size(), test_bytes.size(0), fmt::join(kHeldOutFortunes, ", "), a.length);
  check(a.batch_size <= train.size(), "demo --task lm: --batch-size ", a.batch_size, " is larger than the ",
        train.size(), " training windows");

  // Every model is built before anything trains, so that a bad spec fails at once; both students
  // start from the same weights.
  const std::vector<int64_t> shape{a.length};
  torch::manual_seed(a.seed);
  auto teacher = build_model(a.teacher, shape, 256);
  torch::manual_seed(data::mix_seed(a.seed, 100));
  auto scratch = build_model(a.student, shape, 256);
  torch::manual_seed(data::mix_seed(a.seed, 100));
  auto kd_student = build_model(a.student, shape, 256);

  TrainResult teacher_result;
  if (!a.teacher_weights.empty() && fs::exists(a.teacher_weights)) {
    logger()->info("teacher {}: weights from {}", a.teacher, a.teacher_weights);
    teacher.load_weights(a.teacher_weights);
    teacher_result.train_samples_per_s = -1;
  } else {
    logger()->info("teacher {}: {} epochs", a.teacher, a.epochs_teacher);
    DistillTrainer t(teacher, nullptr, lm_options(a, a.epochs_teacher, a.teacher_lr));
    teacher_result = t.fit(train);
    if (!a.teacher_weights.empty()) teacher.save(a.teacher_weights);
  }
  auto teacher_logits = predict(teacher, test, 64);
  teacher_result.final_eval = metrics::evaluate_logits(teacher_logits, test.targets());

  logger()->info("student {} from the text alone: {} epochs", a.student, a.epochs_student);
  DistillTrainer s(scratch, nullptr, lm_options(a, a.epochs_student, a.lr));
  auto scratch_result = s.fit(train);
  logger()->info("student {} distilled: {} epochs, {} at T={}, alpha={}", a.student, a.epochs_student, a.divergence,
                 a.temperature, a.alpha);
  auto kd_options = lm_options(a, a.epochs_student, a.lr).loss(KDLossOptions().temperature(a.temperature).alpha(a.alpha));
  if (a.divergence != "kl") {
    // alpha * T^2 * D(teacher, student) + (1 - alpha) * cross-entropy, D another divergence.
    auto objective = std::make_shared<CompositeObjective>();
    objective->add(a.divergence, std::make_shared<DivergenceObjective>(
                                     DivergenceOptions().kind(a.divergence).temperature(a.temperature)),
                   a.alpha);
    if (a.alpha < 1) objective->add("ce", std::make_shared<CrossEntropyObjective>(), 1 - a.alpha);
    kd_options.objective(objective);
  }
  std::shared_ptr<Teacher> kd_teacher = std::make_shared<ModelTeacher>(teacher);
  nlohmann::ordered_json cache_record;
  struct RemovedAtExit {
    std::string path;
    ~RemovedAtExit() {
      std::error_code ec;
      if (!path.empty()) fs::remove(path, ec);
    }
  } cache_file;
  if (!a.teacher_cache.empty()) {
    // The teacher's outputs over the training windows, written once and streamed back.
    cache_file.path = (fs::temp_directory_path() / ("kdistill-lm-cache-" + std::to_string(::getpid()) + ".h5")).string();
    const auto& cache_path = cache_file.path;
    const auto t0 = std::chrono::steady_clock::now();
    auto opts = cache_opts;
    auto info = cache_teacher(*kd_teacher, train, cache_path, opts.temperature(a.temperature).batch_size(64));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double per_token = info.bytes_per_row / static_cast<double>(a.length);
    cache_record = {{"spec", a.teacher_cache},
                    {"bytes_per_token", per_token},
                    {"dense_float32_bytes_per_token", 4 * 256},
                    {"write_seconds", seconds}};
    logger()->info("teacher cache {}: {:.1f} bytes per token ({:.1f}% of dense float32), written in {:.1f} s",
                   a.teacher_cache, per_token, 100 * per_token / (4 * 256), seconds);
    // Read whole when it fits easily (the student then sees the live run's order), streamed otherwise.
    const int64_t width = info.format == "topk" ? info.k : info.draws;
    const double decoded = static_cast<double>(info.samples * a.length) *
                           (info.format == "dense" ? 4.0 * static_cast<double>(info.classes) : 16.0 * width + 8);
    const bool stream = decoded > static_cast<double>(int64_t{1} << 30);
    cache_record["streamed"] = stream;
    logger()->info("teacher cache: {:.0f} MB decoded, {}", decoded / (1 << 20), stream ? "streamed" : "read whole");
    kd_teacher = std::make_shared<CachedTeacher>(cache_path, CacheReadOptions().stream(stream));
  }
  DistillTrainer k(kd_student, kd_teacher, kd_options);
  auto kd_result = k.fit(train);
  kd_teacher.reset();  // closes the cache before it is removed

  bench::Report report;
  report.device = a.device;
  report.threads = torch::get_num_threads();
  report.dataset_name = "fortunes";
  report.train = train_bytes.size(0);
  report.test = test_bytes.size(0);
  report.temperature = a.temperature;
  report.alpha = a.alpha;
  Model* models[] = {&teacher, &scratch, &kd_student};
  const TrainResult* results[] = {&teacher_result, &scratch_result, &kd_result};
  const char* names[] = {"teacher", "student_scratch", "student_kd"};
  logger()->info("measuring held-out bits per byte and generation speed");
  for (size_t i = 0; i < 3; ++i) {
    bench::ModelReport m;
    m.arch = models[i]->arch();
    m.params = models[i]->num_parameters();
    const auto e = i == 0 ? teacher_result.final_eval
                          : metrics::evaluate_logits(predict(*models[i], test, 64), test.targets(), teacher_logits);
    m.accuracy = e.accuracy;  // next-byte top-1
    if (i > 0) m.agreement = e.agreement;
    m.bits_per_byte = bits(e);
    m.train_samples_per_s = results[i]->train_samples_per_s;
    for (int64_t batch : {int64_t{1}, int64_t{8}}) {
      m.generation.push_back(bench::measure_generation(
          *models[i], 256,
          bench::GenerationOptions().batch(batch).prompt(a.prompt).new_tokens(a.new_tokens).runs(a.runs).device(device)));
    }
    m.tokens_per_s = m.generation.front().tokens_per_s;
    report.models.emplace_back(names[i], m);
  }

  const auto& t = report.models[0].second;
  std::cout << "\n| model | arch | params | bits/byte | next-byte top-1 | agreement | tokens/s (batch 1) | speed-up |\n"
            << "|---|---|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& [name, m] : report.models) {
    std::cout << fmt::format("| {} | {} | {} | {:.3f} | {:.2f}% | {} | {:.0f} | {:.2f}x |\n", name, m.arch, m.params,
                             m.bits_per_byte, 100 * m.accuracy,
                             m.agreement >= 0 ? fmt::format("{:.2f}%", 100 * m.agreement) : "—", m.tokens_per_s,
                             m.tokens_per_s / t.tokens_per_s);
  }
  const auto& sc = report.models[1].second;
  const auto& kd = report.models[2].second;
  std::cout << fmt::format(
      "\nheld-out text: {} ({} bytes). Distillation ({}) vs text alone: {:+.3f} bits/byte ({:.3f} -> {:.3f}), agreement "
      "{:+.2f} points.\ngeneration ({}, batch 1, {} new bytes after {}): the student is {:.2f}x the teacher's speed "
      "with {:.1f}% of its parameters\n",
      fmt::join(kHeldOutFortunes, ", "), test_bytes.size(0), a.divergence, kd.bits_per_byte - sc.bits_per_byte, sc.bits_per_byte,
      kd.bits_per_byte, 100 * (kd.agreement - sc.agreement), kd.generation.front().method, a.new_tokens, a.prompt,
      kd.tokens_per_s / t.tokens_per_s, 100.0 * static_cast<double>(kd.params) / static_cast<double>(t.params));
  if (!a.report.empty()) {
    auto json = nlohmann::ordered_json::parse(bench::to_json(report));
    if (!cache_record.empty()) json["teacher_cache"] = cache_record;
    io::atomic_write_string(a.report, json.dump(2) + "\n");
    std::cout << "report written to " << a.report << "\n";
  }
  return 0;
}

}  // namespace kdistill::cli
