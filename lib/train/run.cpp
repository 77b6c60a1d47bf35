#include "kdistill/train/run.h"

#include <yaml-cpp/yaml.h>

#include <ctime>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "kdistill/bench/report.h"
#include "kdistill/core/error.h"
#include "kdistill/core/logging.h"
#include "kdistill/core/system.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/data/mnist.h"
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
  ordered_json files = ordered_json::object();  // path -> sha256
};

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
  } else {
    d.train = data::load_hdf5(c.data.train, c.data.features, c.data.labels);
    d.files[c.data.train] = io::sha256_file(c.data.train);
    if (!c.data.test.empty()) {
      d.test = data::load_hdf5(c.data.test, c.data.features, c.data.labels, d.train.num_classes());
      d.files[c.data.test] = io::sha256_file(c.data.test);
    }
  }
  if (c.data.labeled > 0) d.train = d.train.with_label_budget(c.data.labeled);
  return d;
}

ordered_json evaluation_json(const metrics::Evaluation& e) {
  ordered_json j = {{"accuracy", e.accuracy}, {"top5_accuracy", e.top5_accuracy}, {"nll", e.nll}, {"ece", e.ece},
                    {"samples", e.samples}};
  if (e.agreement >= 0) j["agreement"] = e.agreement;
  return j;
}

class Manifest {
 public:
  explicit Manifest(std::string path) : path_(std::move(path)) {}
  ordered_json& json() { return j_; }
  void write() { io::atomic_write_string(path_, j_.dump(2) + "\n"); }

 private:
  std::string path_;
  ordered_json j_;
};

RunResult execute(const RunConfig& c, bool resume) {
  const fs::path out(c.output);
  const std::string manifest_path = (out / "manifest.json").string();
  const std::string init_path = (out / "student_init.pt").string();
  if (!resume) {
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
  std::shared_ptr<Teacher> teacher;
  ordered_json teacher_file = nullptr;
  if (!c.teacher_torchscript.empty()) {
    teacher = std::make_shared<ModelTeacher>(Model::load_torchscript(c.teacher_torchscript, device));
    teacher_file = {{"path", c.teacher_torchscript}, {"sha256", io::sha256_file(c.teacher_torchscript)}};
  } else if (!c.teacher_cache.empty()) {
    auto cached = std::make_shared<CachedTeacher>(c.teacher_cache);
    cached->check_matches(data.train, data.train.num_classes());
    teacher = cached;
    teacher_file = {{"path", c.teacher_cache}, {"sha256", io::sha256_file(c.teacher_cache)}};
  }

  if (!resume) {
    io::atomic_write_string((out / "config.yaml").string(), to_yaml(c));
    io::atomic_write_string(init_path, io::read_file(c.student_torchscript));
  }
  auto info = system_info();
  Manifest manifest(manifest_path);
  auto& m = manifest.json();
  if (resume && fs::exists(manifest_path)) {
    m = ordered_json::parse(io::read_file(manifest_path), nullptr, false);
    if (m.is_discarded()) m = ordered_json::object();
  }
  if (!resume || !m.contains("start_time")) {
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
  m["status"] = "running";
  m.erase("error");
  if (resume) m["resumed_at"] = now_utc();
  manifest.write();

  try {
    auto options = c.train;
    options.output_dir(c.output);
    DistillTrainer trainer(student, teacher, options);
    if (resume) trainer.resume();
    const auto* eval = data.test.size() > 0 ? &data.test : nullptr;
    RunResult result;
    result.output_dir = c.output;
    result.train = trainer.fit(data.train, eval);
    student.save((out / "student.pt").string());

    bench::Report report;
    report.device = c.device;
    report.threads = torch::get_num_threads();
    report.dataset_name = data.train.name();
    report.train = data.train.size();
    report.test = data.test.size();
    report.labeled = data.train.num_labelled();
    if (teacher) {
      report.temperature = options.loss().temperature();
      report.alpha = options.loss().alpha();
    }
    if (teacher && !c.teacher_torchscript.empty()) {
      auto& tm = dynamic_cast<ModelTeacher&>(*teacher).model();
      bench::ModelReport t{tm.arch(), tm.num_parameters(), result.train.teacher_accuracy};
      report.models.emplace_back("teacher", t);
    }
    bench::ModelReport s{student.arch(), student.num_parameters(), eval ? result.train.final_eval.accuracy : -1,
                         result.train.final_eval.agreement, result.train.train_samples_per_s};
    report.models.emplace_back(teacher ? "student_kd" : "student_scratch", s);
    result.report_json = bench::to_json(report);
    io::atomic_write_string((out / "report.json").string(), result.report_json);

    m["status"] = "complete";
    m["end_time"] = now_utc();
    m["steps"] = result.train.steps;
    m["metrics"] = {{"student", evaluation_json(result.train.final_eval)},
                    {"train_samples_per_s", result.train.train_samples_per_s}};
    if (result.train.teacher_accuracy >= 0) m["metrics"]["teacher_accuracy"] = result.train.teacher_accuracy;
    m["files"]["output"] = {{"student.pt", io::sha256_file((out / "student.pt").string())}};
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

}  // namespace

RunResult run_config(const RunConfig& config) { return execute(config, false); }

RunResult resume_run(const std::string& output_dir) {
  const auto path = (fs::path(output_dir) / "config.yaml").string();
  check(fs::is_regular_file(path), "resume: ", output_dir, " holds no config.yaml: it is not a kdistill run directory");
  auto config = parse_config(io::read_file(path), path, fs::absolute(output_dir).string());
  config.output = fs::absolute(output_dir).lexically_normal().string();
  return execute(config, true);
}

}  // namespace kdistill
