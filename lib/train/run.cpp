#include "kdistill/train/run.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "kdistill/bench/report.h"
#include "kdistill/core/error.h"
#include "kdistill/core/logging.h"
#include "kdistill/core/system.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/data/mnist.h"
#include "kdistill/data/tokens.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/io/sha256.h"
#include "kdistill/teachers/cache.h"

namespace kdistill {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// YAML → JSON for the manifest, guessing scalar types as YAML does.
ordered_json to_json(const YAML::Node& n) {
  if (n.IsMap()) {
    ordered_json j = ordered_json::object();
    for (const auto& kv : n) j[kv.first.as<std::string>()] = to_json(kv.second);
    return j;
  }
  if (n.IsSequence()) {
    ordered_json j = ordered_json::array();
    for (const auto& v : n) j.push_back(to_json(v));
    return j;
  }
  if (!n.IsScalar()) return nullptr;
  int64_t i;
  double d;
  bool b;
  if (YAML::convert<int64_t>::decode(n, i)) return i;
  if (YAML::convert<double>::decode(n, d)) return d;
  if (YAML::convert<bool>::decode(n, b)) return b;
  return n.Scalar();
}

struct Data {
  data::TensorDataset train, test;
  data::TensorDataset full_train;  // before the validation split: what a logit cache was made for
  ordered_json files = ordered_json::object();  // path -> sha256
};

// The SHA-256 of a text file, or of each file `read_bytes` reads under a directory.
void hash_text(const std::string& path, ordered_json& files) {
  if (!fs::is_directory(path)) {
    files[path] = io::sha256_file(path);
    return;
  }
  for (const auto& e : fs::recursive_directory_iterator(path)) {
    if (e.is_regular_file() && !e.is_symlink()) files[e.path().string()] = io::sha256_file(e.path().string());
  }
}

Data load_data(const RunConfig& c) {
  Data d;
  if (c.data.format == "idx") {
    auto splits = data::load_mnist_family(c.data.path, fs::path(c.data.path).filename().string());
    d.train = splits.train;
    d.test = splits.test;
    for (const auto& entry : fs::directory_iterator(c.data.path)) {
      const auto name = entry.path().filename().string();
      if (entry.is_regular_file() && name.find("-ubyte") != std::string::npos) {
        d.files[entry.path().string()] = io::sha256_file(entry.path().string());
      }
    }
  } else if (c.data.format == "text") {
    // Next-byte language modelling: the byte-level tokenizer, windows of `length`.
    d.train = data::text_windows(data::read_bytes(c.data.path), c.data.length, 256, "text");
    hash_text(c.data.path, d.files);
    if (!c.data.test.empty()) {
      d.test = data::text_windows(data::read_bytes(c.data.test), c.data.length, 256, "text/test");
      hash_text(c.data.test, d.files);
    }
  } else if (c.data.format == "tokens") {
    d.train = data::load_tokens_hdf5(c.data.train, data::TokenOptions().pad_id(c.data.pad_id));
    d.files[c.data.train] = io::sha256_file(c.data.train);
    if (!c.data.test.empty()) {
      d.test = data::load_tokens_hdf5(c.data.test,
                                      data::TokenOptions().pad_id(c.data.pad_id).vocab_size(d.train.num_classes()));
      d.files[c.data.test] = io::sha256_file(c.data.test);
    }
  } else {
    d.train = data::load_hdf5(c.data.train, c.data.features, c.data.labels);
    d.files[c.data.train] = io::sha256_file(c.data.train);
    if (!c.data.test.empty()) {
      d.test = data::load_hdf5(c.data.test, c.data.features, c.data.labels, d.train.num_classes());
      d.files[c.data.test] = io::sha256_file(c.data.test);
    }
  }
  d.full_train = d.train;
  if (c.data.validation > 0) {
    const auto n = d.train.size();
    check(c.data.validation < n, "data.validation: ", c.data.validation, " must be below the training set size ", n);
    d.test = d.train.slice(n - c.data.validation, n);
    d.train = d.train.slice(0, n - c.data.validation);
  }
  if (c.data.labeled > 0) {
    d.train = d.train.with_label_budget(c.data.labeled);
    // Without a teacher an unlabelled sample carries no signal: the labels-only baseline trains on
    // the labelled samples alone, in full batches. Trained on the whole transfer set, 3,000 labels
    // among 60,000 images gave batches of ~6 labels, and the baseline ended at 30% +- 12.
    const bool has_teacher =
        !c.teacher_torchscript.empty() || !c.teacher_cache.empty() || !c.teacher_ensemble.empty();
    if (!has_teacher) d.train = d.train.labelled_only();
  }
  return d;
}

ordered_json evaluation_json(const metrics::Evaluation& e) {
  ordered_json j = {{"accuracy", e.accuracy}, {"top5_accuracy", e.top5_accuracy}, {"nll", e.nll}, {"ece", e.ece},
                    {"samples", e.samples}};
  if (e.agreement >= 0) j["agreement"] = e.agreement;
  return j;
}

std::string names(const std::vector<std::string>& all) {
  std::string s;
  for (const auto& n : all) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "(none)" : s;
}

// Channels (dim 1 of a [B, C, H, W] feature) or width (a flattened feature) of one tap, measured
// on the first training sample.
int64_t feature_width(const torch::Tensor& f, const std::string& adapter) {
  return adapter == "conv1x1" && f.dim() == 4 ? f.size(1) : f.flatten(1).size(1);
}

// Checks that the taps exist, then runs one training sample through both models and returns the
// student's and the teacher's features (for sizing adapters and checking shapes).
std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> probe_taps(
    const std::string& path, const std::vector<std::pair<std::string, std::string>>& pairs, Model& student,
    Teacher* teacher, const data::TensorDataset& train) {
  check(teacher != nullptr, path, ": feature distillation needs a teacher");
  const auto student_names = student.feature_names();
  const auto teacher_names = teacher->feature_names();
  std::vector<std::string> s_taps, t_taps;
  for (const auto& [s, t] : pairs) {
    check(std::find(student_names.begin(), student_names.end(), s) != student_names.end(), path, ".student: '", s,
          "' is not a feature of the student; its features: ", names(student_names));
    check(std::find(teacher_names.begin(), teacher_names.end(), t) != teacher_names.end(), path, ".teacher: '", t,
          "' is not a feature of the teacher ", teacher->describe(),
          teacher->samples() >= 0 ? ": a logit cache stores only logits, use a live teacher" : "; its features: ",
          teacher->samples() >= 0 ? "" : names(teacher_names));
    s_taps.push_back(s);
    t_taps.push_back(t);
  }
  torch::NoGradGuard no_grad;
  auto x = train.features().narrow(0, 0, 1).to(student.device());
  std::pair<std::vector<torch::Tensor>, std::vector<torch::Tensor>> out;
  try {
    auto fs = [&] {
      TrainingModeGuard<Model> eval(student, false);
      return student.forward_with_features(x, s_taps).features;
    }();
    auto ft = teacher->outputs(x, torch::zeros({1}, torch::kLong), t_taps).features;
    for (size_t i = 0; i < pairs.size(); ++i) {
      out.first.push_back(fs.at(s_taps[i]));
      out.second.push_back(ft.at(t_taps[i]));
    }
  } catch (const c10::Error& e) {
    fail(path, ": the models cannot run a training sample of shape ", x.sizes(), " to probe their features: ",
         first_line(e.what_without_backtrace()));
  }
  return out;
}

std::shared_ptr<Objective> make_hint(const ObjectiveConfig& o, const std::string& path, Model& student,
                                     Teacher* teacher, const data::TensorDataset& train) {
  auto [s, t] = probe_taps(path, {{o.student, o.teacher}}, student, teacher, train);
  const auto &fs = s[0], &ft = t[0];
  check(o.adapter != "conv1x1" || (fs.dim() == 4 && ft.dim() == 4), path, ".adapter: conv1x1 needs [B, C, H, W] "
        "features; the student's is ", fs.sizes(), ", the teacher's ", ft.sizes(), " (use adapter: linear)");
  return std::make_shared<HintObjective>(HintOptions(o.student, o.teacher)
                                             .student_channels(feature_width(fs, o.adapter))
                                             .teacher_channels(feature_width(ft, o.adapter))
                                             .adapter(o.adapter));
}

std::shared_ptr<Objective> make_attention(const ObjectiveConfig& o, const std::string& path, Model& student,
                                          Teacher* teacher, const data::TensorDataset& train) {
  auto [s, t] = probe_taps(path, o.pairs, student, teacher, train);
  for (size_t i = 0; i < s.size(); ++i) {
    check(s[i].dim() == 4 && t[i].dim() == 4, path, ": attention transfer needs [B, C, H, W] features; '",
          o.pairs[i].first, "' of the student is ", s[i].sizes(), ", '", o.pairs[i].second, "' of the teacher is ",
          t[i].sizes());
  }
  return std::make_shared<AttentionTransferObjective>(AttentionTransferOptions(o.pairs).p(o.p));
}

std::shared_ptr<Objective> make_one(const ObjectiveConfig& o, const std::string& path, Model& student,
                                    Teacher* teacher, const data::TensorDataset& train) {
  if (o.kind == "hint") return make_hint(o, path, student, teacher, train);
  if (o.kind == "at") return make_attention(o, path, student, teacher, train);
  if (o.kind == "ce") return std::make_shared<CrossEntropyObjective>();
  if (o.kind == "mse") return std::make_shared<LogitMSEObjective>();
  const double t = o.temperature.initial();
  std::shared_ptr<Objective> obj;
  Tempered* tempered = nullptr;
  if (o.kind == "kd") {
    auto kd = std::make_shared<KDObjective>(KDLossOptions().temperature(t).alpha(o.alpha));
    tempered = kd.get();
    obj = kd;
  } else if (o.kind == "soft_ce") {
    auto ce = std::make_shared<SoftTargetCEObjective>(t);
    tempered = ce.get();
    obj = ce;
  } else if (o.kind == "dkd") {
    auto dkd = std::make_shared<DKDObjective>(DKDLossOptions().alpha(o.alpha).beta(o.beta).temperature(t));
    tempered = dkd.get();
    obj = dkd;
  } else {
    auto d = std::make_shared<DivergenceObjective>(
        DivergenceOptions().kind(o.kind).temperature(t).beta(o.beta).skew(o.skew));
    tempered = d.get();
    obj = d;
  }
  tempered->set_temperature(o.temperature);
  return obj;
}

// The run's objective from the list form of `loss:`; null for the mapping form (the trainer builds
// KD from `train.loss()`, or label cross-entropy without a teacher).
std::shared_ptr<Objective> make_objective(const RunConfig& c, Model& student, Teacher* teacher,
                                          const data::TensorDataset& train) {
  if (c.objectives.empty()) return nullptr;
  auto composite = std::make_shared<CompositeObjective>();
  for (size_t i = 0; i < c.objectives.size(); ++i) {
    const auto& o = c.objectives[i];
    const auto path = "loss[" + std::to_string(i) + "]";
    auto obj = make_one(o, path, student, teacher, train);
    check(teacher != nullptr || !obj->needs_teacher(), path, ": a ", o.kind, " objective needs a teacher, and the "
          "run has none (add teacher:)");
    composite->add(o.name, obj, o.weight);
  }
  return composite;
}

std::shared_ptr<Teacher> load_teacher(const RunConfig& c, const Data& data, const torch::Device& device,
                                      ordered_json& files) {
  auto cached = [&](const std::string& path, bool stream) {
    auto t = std::make_shared<CachedTeacher>(path, CacheReadOptions().stream(stream));
    t->check_matches(data.full_train, data.train.num_classes());
    if (data.train.size() == t->samples()) return t;
    // data.validation held out the last samples: the run trains on the cache's first rows.
    return t->first_rows(data.train.size(), path + " (its first " + std::to_string(data.train.size()) + " rows)");
  };
  auto file = [](const std::string& path) { return ordered_json{{"path", path}, {"sha256", io::sha256_file(path)}}; };
  if (!c.teacher_torchscript.empty()) {
    files = file(c.teacher_torchscript);
    return std::make_shared<ModelTeacher>(Model::load_torchscript(c.teacher_torchscript, device));
  }
  if (!c.teacher_cache.empty()) {
    files = file(c.teacher_cache);
    return cached(c.teacher_cache, c.teacher_stream);
  }
  if (c.teacher_ensemble.empty()) return nullptr;
  std::vector<std::shared_ptr<Teacher>> members;
  std::vector<double> weights;
  files = ordered_json::array();
  for (const auto& m : c.teacher_ensemble) {
    const auto& path = m.cache.empty() ? m.torchscript : m.cache;
    files.push_back(file(path));
    if (m.cache.empty()) {
      members.push_back(std::make_shared<ModelTeacher>(Model::load_torchscript(m.torchscript, device)));
    } else {
      members.push_back(cached(m.cache, m.stream));
    }
    weights.push_back(m.weight);
  }
  return std::make_shared<EnsembleTeacher>(members, weights);
}

// Only rank 0 of a data-parallel run writes the run's files.
bool writes_files(const RunConfig& c) { return !c.train.process_group() || c.train.process_group()->rank() == 0; }

class Manifest {
 public:
  Manifest(std::string path, bool enabled) : path_(std::move(path)), enabled_(enabled) {}
  ordered_json& json() { return j_; }
  void write() {
    if (enabled_) io::atomic_write_string(path_, j_.dump(2) + "\n");
  }

 private:
  std::string path_;
  bool enabled_;
  ordered_json j_;
};

// A finished run, read back from its directory: resuming it trains and writes nothing.
RunResult read_back(const RunConfig& c, const ordered_json& m) {
  RunResult r;
  r.output_dir = c.output;
  r.report_json = io::read_file((fs::path(c.output) / "report.json").string());
  r.train.steps = m.value("steps", int64_t{0});
  const auto& metrics = m.at("metrics");
  r.train.train_samples_per_s = metrics.value("train_samples_per_s", 0.0);
  r.train.teacher_accuracy = metrics.value("teacher_accuracy", -1.0);
  const auto& s = metrics.at("student");
  r.train.final_eval.accuracy = s.value("accuracy", -1.0);
  r.train.final_eval.agreement = s.value("agreement", -1.0);
  r.train.final_eval.nll = s.value("nll", 0.0);
  r.train.final_eval.ece = s.value("ece", 0.0);
  r.train.final_eval.top5_accuracy = s.value("top5_accuracy", 0.0);
  r.train.final_eval.samples = s.value("samples", int64_t{0});
  return r;
}

RunResult execute(const RunConfig& c, bool resume) {
  const fs::path out(c.output);
  const std::string manifest_path = (out / "manifest.json").string();
  if (resume && fs::exists(manifest_path) && fs::exists(out / "report.json")) {
    auto done = ordered_json::parse(io::read_file(manifest_path), nullptr, false);
    if (!done.is_discarded() && done.value("status", "") == "complete" && done.contains("metrics")) {
      logger()->info("{} is a finished run: nothing to resume", c.output);
      return read_back(c, done);
    }
  }
  const std::string init_path = (out / "student_init.pt").string();
  const bool writer = writes_files(c);
  if (!resume && writer) {
    check(!fs::exists(manifest_path) && !fs::exists(out / "checkpoints"), "output directory ", c.output,
          " already holds a run; continue it with `kdistill train --resume ", c.output, "` or choose another output");
  }
  io::ensure_writable_dir(c.output);
  const auto device = parse_device(c.device);
  set_threads(c.threads);

  // Validate inputs before writing anything beyond the directory itself.
  auto data = load_data(c);
  check(fs::is_regular_file(resume ? init_path : c.student_torchscript), "student.torchscript: ",
        resume ? init_path : c.student_torchscript, " does not exist or is not a file");
  auto student = Model::load_torchscript(resume ? init_path : c.student_torchscript, device);
  ordered_json teacher_file = nullptr;
  auto teacher = load_teacher(c, data, device, teacher_file);
  auto objective = make_objective(c, student, teacher.get(), data.train);

  if (!resume && writer) {
    io::atomic_write_string((out / "config.yaml").string(), to_yaml(c));
    io::atomic_write_string(init_path, io::read_file(c.student_torchscript));
  }
  auto info = system_info();
  Manifest manifest(manifest_path, writer);
  auto& m = manifest.json();
  if (resume && fs::exists(manifest_path)) {
    m = ordered_json::parse(io::read_file(manifest_path), nullptr, false);
    if (m.is_discarded()) m = ordered_json::object();
  }
  if (writer && (!resume || !m.contains("start_time"))) {
    m["kdistill_version"] = info.kdistill_version;
    m["torch_version"] = info.torch_version;
    m["blas"] = info.blas_library;
    m["device"] = c.device;
    m["threads"] = torch::get_num_threads();
    m["seed"] = c.seed;
    m["start_time"] = now_utc();
    m["config"] = to_json(YAML::Load(to_yaml(c)));
    m["files"] = {{"data", data.files},
                  {"teacher", teacher_file},
                  {"student", {{"path", c.student_torchscript}, {"sha256", io::sha256_file(init_path)}}}};
  }
  const auto& group = c.train.process_group();  // this start's; a resume may change it
  m["world_size"] = group ? group->size() : 1;
  m["backend"] = group ? group->backend() : "none";
  m["status"] = "running";
  m.erase("error");
  if (resume) m["resumed_at"] = now_utc();
  manifest.write();

  try {
    auto options = c.train;
    options.output_dir(c.output).objective(objective);
    DistillTrainer trainer(student, teacher, options);
    if (resume) trainer.resume();
    const auto* eval = data.test.size() > 0 ? &data.test : nullptr;
    RunResult result;
    result.output_dir = c.output;
    result.train = trainer.fit(data.train, eval);
    if (writer) student.save((out / "student.pt").string());

    bench::Report report;
    report.device = c.device;
    report.threads = torch::get_num_threads();
    report.dataset_name = data.train.name();
    report.train = data.train.size();
    report.test = data.test.size();
    report.labeled = data.train.num_labelled();
    if (teacher && c.objectives.empty()) {
      report.temperature = options.loss().temperature();
      report.alpha = options.loss().alpha();
    }
    for (const auto& o : c.objectives) {
      if (teacher && o.kind == "kd") {  // the first KD term's temperature and its share of the soft targets
        report.temperature = o.temperature.initial();
        report.alpha = o.alpha * o.weight.initial();
        break;
      }
    }
    if (teacher && teacher->num_parameters() >= 0) {
      bench::ModelReport t;
      t.arch = teacher->describe();
      t.params = teacher->num_parameters();
      t.accuracy = result.train.teacher_accuracy;
      report.models.emplace_back("teacher", t);
    }
    bench::ModelReport s;
    s.arch = student.arch();
    s.params = student.num_parameters();
    s.accuracy = eval ? result.train.final_eval.accuracy : -1;
    s.agreement = result.train.final_eval.agreement;
    s.train_samples_per_s = result.train.train_samples_per_s;
    report.models.emplace_back(teacher ? "student_kd" : "student_scratch", s);
    result.report_json = bench::to_json(report);
    if (writer) io::atomic_write_string((out / "report.json").string(), result.report_json);

    m["status"] = "complete";
    m["end_time"] = now_utc();
    m["steps"] = result.train.steps;
    m["metrics"] = {{"student", evaluation_json(result.train.final_eval)},
                    {"train_samples_per_s", result.train.train_samples_per_s}};
    if (result.train.teacher_accuracy >= 0) m["metrics"]["teacher_accuracy"] = result.train.teacher_accuracy;
    if (const auto& d = result.train.distributed; d.world_size > 1) {
      m["metrics"]["distributed"] = {{"world_size", d.world_size},
                                     {"backend", d.backend},
                                     {"allreduce_bytes_per_step", d.allreduce_bytes_per_step},
                                     {"allreduce_s_per_step", d.allreduce_s_per_step},
                                     {"allreduce_buckets", d.allreduce_buckets},
                                     {"buckets_in_backward", d.buckets_in_backward},
                                     {"step_s", d.step_s}};
    }
    if (writer) m["files"]["output"] = {{"student.pt", io::sha256_file((out / "student.pt").string())}};
    manifest.write();
    logger()->info("run complete: {} (student accuracy {:.4f})", c.output, result.train.final_eval.accuracy);
    return result;
  } catch (const std::exception& e) {
    m["status"] = "failed";
    m["error"] = e.what();
    m["end_time"] = now_utc();
    try {
      manifest.write();
    } catch (...) {
    }
    throw;
  }
}

RunResult resume_in(const std::string& output_dir, std::shared_ptr<ProcessGroup> group);

std::string generation_dir(const RunConfig& c, int64_t g) {
  return (fs::path(c.output) / ("generation_" + std::to_string(g))).string();
}

// Born-again distillation: generation g trains in output/generation_g; from the second on, the
// teacher is the previous generation's student. The output directory itself holds the config,
// the last generation's student.pt, a report with every generation, and a manifest.
RunResult run_generations(const RunConfig& c, bool resume) {
  const fs::path out(c.output);
  const bool writer = writes_files(c);
  if (!resume && writer) {
    check(!fs::exists(out / "config.yaml"), "output directory ", c.output, " already holds a run; continue it with "
          "`kdistill train --resume ", c.output, "` or choose another output");
    io::ensure_writable_dir(c.output);
    io::atomic_write_string((out / "config.yaml").string(), to_yaml(c));
  }
  RunResult result;
  result.output_dir = c.output;
  ordered_json report, generations = ordered_json::array();
  for (int64_t g = 1; g <= c.generations; ++g) {
    auto cg = c;
    cg.generations = 1;
    cg.output = generation_dir(c, g);
    // Every generation starts from the same student file; each gets its own batch order.
    cg.seed = c.seed + static_cast<uint64_t>(g - 1);
    cg.train.seed(cg.seed);
    if (g > 1) {
      cg.teacher_torchscript = (fs::path(generation_dir(c, g - 1)) / "student.pt").string();
      cg.teacher_cache.clear();
      cg.teacher_ensemble.clear();
    }
    logger()->info("generation {} of {}: {}", g, c.generations, cg.output);
    bool started = fs::exists(fs::path(cg.output) / "config.yaml");
    if (const auto& group = c.train.process_group()) {  // rank 0 decides, before it writes there
      std::vector<torch::Tensor> flag{torch::full({1}, started ? 1 : 0, torch::kLong)};
      group->broadcast(flag, 0, "the start of generation " + std::to_string(g));
      started = flag[0].item<int64_t>() != 0;
    }
    auto r = started ? resume_in(cg.output, c.train.process_group()) : execute(cg, false);
    auto j = ordered_json::parse(r.report_json);
    if (g == 1) {
      report = j;
      report["models"] = ordered_json::object();
      if (j["models"].contains("teacher")) report["models"]["teacher"] = j["models"]["teacher"];
    }
    for (const char* key : {"student_kd", "student_scratch"}) {
      if (j["models"].contains(key)) report["models"]["student_gen" + std::to_string(g)] = j["models"][key];
    }
    generations.push_back({{"output", cg.output}, {"accuracy", r.train.final_eval.accuracy}});
    result.generations.push_back(r.train);
    result.train = r.train;
  }
  result.report_json = report.dump(2) + "\n";
  if (!writer) return result;
  io::atomic_write_string((out / "student.pt").string(),
                          io::read_file((fs::path(generation_dir(c, c.generations)) / "student.pt").string()));
  io::atomic_write_string((out / "report.json").string(), result.report_json);
  ordered_json manifest = {{"kdistill_version", system_info().kdistill_version},
                           {"status", "complete"},
                           {"end_time", now_utc()},
                           {"generations", generations},
                           {"files", {{"output", {{"student.pt", io::sha256_file((out / "student.pt").string())}}}}}};
  io::atomic_write_string((out / "manifest.json").string(), manifest.dump(2) + "\n");
  return result;
}

// A data-parallel run started by a launcher (WORLD_SIZE > 1 in the environment) joins its group.
RunConfig join_group(RunConfig c) {
  if (c.train.process_group()) return c;
  const auto env = distributed_from_env(c.distributed);
  if (env.world_size() == 1) return c;
  auto device = parse_device(c.device);
  if (device.is_cuda() && !device.has_index()) {  // one GPU per local rank, as torchrun expects
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank()));
    c.device = device.str();
    c.train.device(c.device);
  }
  c.train.process_group(ProcessGroup::create(env, device));
  // Workers on one host share its cores: N workers of T threads each should fit.
  const char* local = std::getenv("LOCAL_WORLD_SIZE");
  const int64_t workers = local != nullptr ? std::max(1L, std::atol(local)) : 1;
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t threads = c.threads > 0 ? c.threads : torch::get_num_threads();
  if (workers > 1 && threads * workers > cores) {
    logger()->warn("{} workers on this host with {} threads each oversubscribe its {} cores; set threads: {}",
                   workers, threads, cores, std::max<int64_t>(1, cores / workers));
  }
  return c;
}

// Continues the run in `output_dir` with `group`, or with the group the environment describes.
RunResult resume_in(const std::string& output_dir, std::shared_ptr<ProcessGroup> group) {
  const auto path = (fs::path(output_dir) / "config.yaml").string();
  check(fs::is_regular_file(path), "resume: ", output_dir, " holds no config.yaml: it is not a kdistill run directory");
  auto config = parse_config(io::read_file(path), path, fs::absolute(output_dir).string());
  config.output = fs::absolute(output_dir).lexically_normal().string();
  config.train.process_group(std::move(group));
  config = join_group(config);
  return config.generations > 1 ? run_generations(config, true) : execute(config, true);
}

}  // namespace

RunResult run_config(const RunConfig& config_arg) {
  const auto config = join_group(config_arg);
  return config.generations > 1 ? run_generations(config, false) : execute(config, false);
}

RunResult resume_run(const std::string& output_dir) { return resume_in(output_dir, nullptr); }

}  // namespace kdistill
