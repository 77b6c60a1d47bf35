// `kdistill demo`: the README's main command. Trains a teacher on every label of Fashion-MNIST,
// then the same student twice with the same seed, initialisation and step budget: once from the
// labels alone (the baseline) and once by distillation, where the teacher's soft targets cover
// every training image but only the first --labels images keep their label. Prints the trade-off.
#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "cli_util.h"
#include "commands.h"
#include "demo_lm.h"
#include "kdistill/kdistill.h"

namespace kdistill::cli {
namespace {

struct DemoArgs {
  std::string data = data::kFashionMnistDir;
  std::string teacher = "mlp:1200,1200";
  std::string student = "mlp:64";
  int64_t epochs_teacher = 10;
  int64_t epochs_student = 10;
  // Tuned on the last 10,000 training images (bench/tune_demo.py, bench/results/demo_tuning_cpu.json).
  double temperature = 2.0;
  double alpha = 0.9;
  int64_t batch_size = 128;
  double lr = 0.05;
  double teacher_lr = 0.05;
  uint64_t seed = 0;
  int threads = 2;
  std::string device = "cpu";
  int64_t labels = 3000;
  std::string report;
  std::string teacher_weights;
  int64_t validation = 0;
  double bench_seconds = 0.5;
  std::string batches = "1,256";
  bool offline = false;
  std::string precision = "fp32";
};

TrainerOptions common(const DemoArgs& a, int64_t epochs, double lr) {
  const auto p = parse_precision(a.precision, "--precision");
  return TrainerOptions()
      .precision(PrecisionOptions().teacher(p).student(p))
      .epochs(epochs)
      .batch_size(a.batch_size)
      .lr(lr)
      .momentum(0.9)
      .weight_decay(5e-4)
      .schedule("cosine")
      .seed(a.seed)
      .device(a.device)
      .threads(a.threads);
}

bench::ModelReport describe(Model& model, const TrainResult& r) {
  bench::ModelReport m;
  m.arch = model.arch();
  m.params = model.num_parameters();
  m.accuracy = r.final_eval.accuracy;
  if (r.final_eval.agreement >= 0) m.agreement = r.final_eval.agreement;
  m.train_samples_per_s = r.train_samples_per_s;
  return m;
}

int run_demo(const DemoArgs& a) {
  const auto device = parse_device(a.device);
  const auto batches = parse_int_list("--batch", a.batches);
  set_threads(a.threads);
  check(a.labels >= 0, "demo: --labels must be >= 0, got ", a.labels);
  // Hyperparameters are checked before anything trains: a bad --alpha must not cost a teacher.
  check(a.temperature > 0, "demo: --temperature must be > 0, got ", a.temperature);
  check(a.alpha >= 0 && a.alpha <= 1, "demo: --alpha must be in [0, 1], got ", a.alpha);
  check(a.lr > 0 && a.teacher_lr > 0, "demo: --lr and --teacher-lr must be > 0, got ", a.lr, " and ", a.teacher_lr);
  check(a.validation >= 0, "demo: --validation must be >= 0, got ", a.validation);
  const auto precision = parse_precision(a.precision, "--precision");
  if (!a.report.empty()) {
    const auto dir = std::filesystem::absolute(a.report).parent_path();
    check(std::filesystem::is_directory(dir), "demo: --report: directory ", dir.string(), " does not exist");
  }
  auto splits = data::load_mnist_family(a.data, "fashion-mnist");
  data::TensorDataset train = splits.train, eval = splits.test;
  if (a.validation > 0) {
    // Tuning mode: hold out the last images of the training set and never touch the test set.
    check(a.validation < train.size(), "demo: --validation ", a.validation, " must be below the training set size ",
          train.size());
    eval = train.slice(train.size() - a.validation, train.size());
    train = train.slice(0, train.size() - a.validation);
    logger()->info("tuning mode: evaluating on the last {} training images, not on the test set", a.validation);
  }
  check(a.batch_size <= train.size(), "demo: --batch-size: batch_size ", a.batch_size,
        " is larger than the training set (", train.size(), " samples)");
  const int64_t labels = (a.labels == 0 || a.labels >= train.size()) ? train.size() : a.labels;
  const auto shape = train.sample_shape();
  const int64_t classes = train.num_classes();

  // All three models are built before anything trains, so that a bad spec fails at once. Both
  // students start from the same initial weights.
  torch::manual_seed(a.seed);
  auto teacher = build_model(a.teacher, shape, classes, 0.2);
  torch::manual_seed(data::mix_seed(a.seed, 100));
  auto kd_student = build_model(a.student, shape, classes);
  torch::manual_seed(data::mix_seed(a.seed, 100));
  auto scratch_student = build_model(a.student, shape, classes);

  TrainResult teacher_result;
  if (!a.teacher_weights.empty() && std::filesystem::exists(a.teacher_weights)) {
    logger()->info("teacher {}: weights from {}", a.teacher, a.teacher_weights);
    teacher.load_weights(a.teacher_weights);
    teacher_result.final_eval = evaluate(teacher, eval);
    teacher_result.train_samples_per_s = -1;  // not trained in this run
  } else {
    logger()->info("teacher {}: {} epochs on {} labelled images", a.teacher, a.epochs_teacher, train.size());
    DistillTrainer teacher_trainer(teacher, nullptr, common(a, a.epochs_teacher, a.teacher_lr));
    teacher_result = teacher_trainer.fit(train, &eval);
    if (!a.teacher_weights.empty()) teacher.save(a.teacher_weights);
  }

  auto transfer = train.with_label_budget(labels);
  const int64_t kd_steps = a.epochs_student * ((train.size() + a.batch_size - 1) / a.batch_size);
  logger()->info("student {} by distillation: {} epochs over {} images, {} with labels, T={} alpha={}", a.student,
                 a.epochs_student, transfer.size(), labels, a.temperature, a.alpha);
  auto kd_opts = common(a, a.epochs_student, a.lr).loss(KDLossOptions().temperature(a.temperature).alpha(a.alpha));
  std::shared_ptr<Teacher> kd_teacher = std::make_shared<ModelTeacher>(teacher);
  double logits_seconds = 0;
  if (a.offline) {
    // The demo has no augmentation, so the teacher's logits for an image never change: one pass
    // replaces a forward per step, and the student sees the same targets.
    const auto start = std::chrono::steady_clock::now();
    kd_teacher->set_precision(precision);
    kd_teacher = CachedTeacher::from_logits(compute_teacher_logits(*kd_teacher, transfer), "demo teacher");
    logits_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    logger()->info("--offline: the teacher's logits for {} images computed once in {:.1f} s", transfer.size(),
                   logits_seconds);
  }
  DistillTrainer kd_trainer(kd_student, kd_teacher, kd_opts);
  auto kd_result = kd_trainer.fit(transfer, &eval);
  if (logits_seconds > 0 && kd_result.train_samples_per_s > 0) {
    // The reported rate is the whole cost of distilling: the teacher's one pass included.
    const double samples = static_cast<double>(a.epochs_student * transfer.size());
    kd_result.train_samples_per_s = samples / (samples / kd_result.train_samples_per_s + logits_seconds);
  }

  // The baseline gets the same number of optimizer steps, on the labelled images only.
  auto labelled = transfer.labelled_only();
  const int64_t batch = std::min(a.batch_size, labelled.size());
  const int64_t spe = (labelled.size() + batch - 1) / batch;
  logger()->info("student {} from labels alone: {} steps on {} labelled images", a.student, kd_steps, labelled.size());
  auto scratch_opts = common(a, (kd_steps + spe - 1) / spe, a.lr).batch_size(batch).max_steps(kd_steps);
  DistillTrainer scratch_trainer(scratch_student, nullptr, scratch_opts);
  auto scratch_result = scratch_trainer.fit(labelled, &eval);
  // Both students' agreement is measured here, the same way (a cached teacher cannot score the
  // evaluation images, so the trainer does not measure it then; with a live teacher this repeats
  // the trainer's pass over the evaluation set, a few seconds for the CNN).
  auto teacher_eval_logits = predict(teacher, eval);
  scratch_result.final_eval.agreement = metrics::agreement(predict(scratch_student, eval), teacher_eval_logits);
  kd_result.final_eval.agreement = metrics::agreement(predict(kd_student, eval), teacher_eval_logits);

  logger()->info("measuring latency");
  auto lat = bench::LatencyOptions().min_seconds(a.bench_seconds).min_iters(200).threads(a.threads);
  bench::Report report;
  report.device = a.device;
  report.threads = torch::get_num_threads();
  report.precision = to_string(precision);
  report.dataset_name = "fashion-mnist";
  report.train = train.size();
  report.test = eval.size();
  report.labeled = labels;
  report.temperature = a.temperature;
  report.alpha = a.alpha;
  report.models = {{"teacher", describe(teacher, teacher_result)},
                   {"student_scratch", describe(scratch_student, scratch_result)},
                   {"student_kd", describe(kd_student, kd_result)}};
  Model* models[] = {&teacher, &scratch_student, &kd_student};
  for (size_t i = 0; i < 3; ++i) {
    auto measured = models[i]->with_precision(precision);
    report.models[i].second.latency = bench::measure_model(measured, shape, batches, device, lat);
    if (precision != Precision::kFloat32) {
      // bf16 serving is a deployment choice: its accuracy against the same model in fp32.
      auto fp32 = predict(*models[i], eval), low = predict(measured, eval);
      auto& m = report.models[i].second;
      m.accuracy_fp32 = metrics::accuracy(fp32, eval.targets());
      m.accuracy = metrics::accuracy(low, eval.targets());
      m.agreement_with_fp32 = metrics::agreement(low, fp32);
    }
  }

  std::cout << "\n" << bench::to_markdown(report) << "\n";
  const auto& t = report.models[0].second;
  const auto& s = report.models[1].second;
  const auto& k = report.models[2].second;
  std::cout << fmt::format(
      "distillation vs labels alone: {:+.2f} points ({:.2f}% -> {:.2f}%) with {} of {} labels\n"
      "the distilled student keeps {:.1f}% of the teacher's accuracy with {:.1f}% of its parameters\n",
      100 * (k.accuracy - s.accuracy), 100 * s.accuracy, 100 * k.accuracy, labels, train.size(),
      100 * k.accuracy / t.accuracy, 100.0 * static_cast<double>(k.params) / static_cast<double>(t.params));
  if (!a.report.empty()) {
    io::atomic_write_string(a.report, bench::to_json(report));
    std::cout << "report written to " << a.report << "\n";
  }
  return 0;
}

// The language-model demo's settings: its own defaults, overridden by the shared options the user
// gave (`given` tells which).
LmDemoArgs lm_args(const DemoArgs& a, const LmDemoArgs& extra, const std::function<bool(const char*)>& given) {
  LmDemoArgs l = extra;
  if (given("--data")) l.data = a.data;
  if (given("--teacher")) l.teacher = a.teacher;
  if (given("--student")) l.student = a.student;
  if (given("--epochs-teacher")) l.epochs_teacher = a.epochs_teacher;
  if (given("--epochs-student")) l.epochs_student = a.epochs_student;
  if (given("--temperature")) l.temperature = a.temperature;
  if (given("--alpha")) l.alpha = a.alpha;
  if (given("--batch-size")) l.batch_size = a.batch_size;
  if (given("--lr")) l.lr = a.lr;
  if (given("--teacher-lr")) l.teacher_lr = a.teacher_lr;
  l.seed = a.seed;
  l.threads = a.threads;
  l.device = a.device;
  l.report = a.report;
  l.teacher_weights = a.teacher_weights;
  for (const char* image_only : {"--labels", "--validation", "--offline", "--batch", "--bench-seconds", "--precision"}) {
    check(!given(image_only), "demo --task lm: ", image_only, " is for the image demo only");
  }
  return l;
}

}  // namespace

Run add_demo(CLI::App& app) {
  auto a = std::make_shared<DemoArgs>();
  auto lm = std::make_shared<LmDemoArgs>();
  auto task = std::make_shared<std::string>("image");
  app.add_option("--task", *task, "image (Fashion-MNIST classifiers) or lm (byte-level language models on Debian's "
                 "fortunes text)")->capture_default_str()->check(CLI::IsMember({"image", "lm"}));
  app.add_option("--length", lm->length, "lm: bytes per training window (the models' context)")
      ->capture_default_str()->check(CLI::Range(2, 4096));
  app.add_option("--max-bytes", lm->max_bytes, "lm: use only the first N training bytes (0: all)")
      ->capture_default_str();
  app.add_option("--divergence", lm->divergence, "lm: the soft term, kl (Hinton's KD), reverse_kl, jsd, tvd, skew_kl "
                 "or skew_reverse_kl")->capture_default_str();
  app.add_option("--teacher-cache", lm->teacher_cache,
                 "lm: distil from a cache of the teacher's outputs instead of the live teacher: dense, topk:K or "
                 "sampled:S (written to a temporary file; streamed back beyond 1 GiB)");
  app.add_option("--new-tokens", lm->new_tokens, "lm: bytes generated per timed generation")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  app.add_option("--data", a->data, "MNIST-family directory (IDX files, .gz or plain)")->capture_default_str();
  app.add_option("--teacher", a->teacher, "Teacher: mlp:W1,W2,... or cnn")->capture_default_str();
  app.add_option("--student", a->student, "Student: mlp:W,... or cnn:W1,W2,...")->capture_default_str();
  app.add_option("--epochs-teacher", a->epochs_teacher, "Teacher epochs")->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--epochs-student", a->epochs_student, "Student epochs over the transfer set")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--temperature", a->temperature, "Distillation temperature T")->capture_default_str();
  app.add_option("--alpha", a->alpha, "Weight of the soft (teacher) term")->capture_default_str();
  app.add_option("--batch-size", a->batch_size, "Batch size")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  app.add_option("--lr", a->lr, "Students' peak learning rate (SGD, momentum 0.9, cosine)")->capture_default_str();
  app.add_option("--teacher-lr", a->teacher_lr, "Teacher's peak learning rate")->capture_default_str();
  app.add_option("--seed", a->seed, "Seed for initialisation, shuffling and dropout")->capture_default_str();
  app.add_option("--threads", a->threads, "Intra-op threads")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--labels", a->labels, "Labels the students get (the first N images); 0 = all")->capture_default_str();
  app.add_option("--report", a->report, "Write the JSON report here");
  app.add_option("--teacher-weights", a->teacher_weights,
                 "Reuse the teacher saved in this file if it exists; otherwise train it and save it there");
  app.add_option("--validation", a->validation,
                 "Tuning: evaluate on the last N training images instead of the test set")
      ->capture_default_str();
  app.add_option("--precision", a->precision, "fp32 or bf16: bf16 trains with bf16 compute on float32 weights, runs "
                 "the teacher in bf16 and measures latency in bf16")->capture_default_str();
  app.add_flag("--offline", a->offline,
               "Compute the teacher's logits once and distil from them (the same targets: the demo has no "
               "augmentation); the distilled student's samples/s include that pass");
  app.add_option("--batch", a->batches, "Batch sizes whose latency is measured")->capture_default_str();
  app.add_option("--bench-seconds", a->bench_seconds, "Timed seconds per model and batch size")->capture_default_str();
  return [a, lm, task, &app] {
    const auto given = [&](const char* name) { return app.count(name) > 0; };
    if (*task == "lm") return run_lm_demo(lm_args(*a, *lm, given));
    for (const char* lm_only : {"--length", "--max-bytes", "--new-tokens", "--divergence", "--teacher-cache"}) {
      check(!given(lm_only), "demo: ", lm_only, " is for the language-model demo only (--task lm)");
    }
    return run_demo(*a);
  };
}

}  // namespace kdistill::cli
