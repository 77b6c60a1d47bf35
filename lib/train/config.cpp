#include "kdistill/train/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <set>
#include <sstream>

#include "kdistill/core/error.h"
#include "kdistill/io/atomic_file.h"

namespace kdistill {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxThreads = 4096;

// Typed access to YAML nodes with errors that name the origin and the key path.
class Reader {
 public:
  Reader(std::string origin, std::string base_dir) : origin_(std::move(origin)), base_(std::move(base_dir)) {}

  void keys(const YAML::Node& node, const std::string& path, const std::set<std::string>& allowed) const {
    if (!node.IsMap()) fail(origin_, ": ", path.empty() ? "the document" : path, ": expected a mapping, got ", kind(node));
    for (const auto& kv : node) {
      // YAML allows any node as a key (`? [a, b]: 1`, `? : 1`); a config key is a plain name.
      if (!kv.first.IsScalar()) {
        fail(origin_, ": ", path.empty() ? "the document" : path, ": every key must be a name, got ",
             kind(kv.first), " as a key");
      }
      const auto key = kv.first.Scalar();
      if (allowed.count(key) == 0) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        fail(origin_, ": ", join(path, key), ": unknown key (expected one of: ", list, ")");
      }
    }
  }

  double number(const YAML::Node& n, const std::string& path) const {
    scalar(n, path, "a number");
    try {
      return n.as<double>();
    } catch (const YAML::BadConversion&) {
      fail(origin_, ": ", path, ": expected a number, got \"", n.Scalar(), "\"");
    }
  }

  int64_t integer(const YAML::Node& n, const std::string& path) const {
    scalar(n, path, "an integer");
    try {
      return n.as<int64_t>();
    } catch (const YAML::BadConversion&) {
      fail(origin_, ": ", path, ": expected an integer, got \"", n.Scalar(), "\"");
    }
  }

  // Digits only, 0 to 2^64 - 1 (seeds): yaml-cpp would wrap "-1" around to 2^64 - 1.
  uint64_t unsigned_integer(const YAML::Node& n, const std::string& path) const {
    scalar(n, path, "a non-negative integer");
    const auto& s = n.Scalar();
    uint64_t value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size()) {
      fail(origin_, ": ", path, ": expected an integer from 0 to 18446744073709551615, got \"", s, "\"");
    }
    return value;
  }

  bool boolean(const YAML::Node& n, const std::string& path) const {
    scalar(n, path, "true or false");
    try {
      return n.as<bool>();
    } catch (const YAML::BadConversion&) {
      fail(origin_, ": ", path, ": expected true or false, got \"", n.Scalar(), "\"");
    }
  }

  std::string string(const YAML::Node& n, const std::string& path) const {
    scalar(n, path, "a string");
    return n.Scalar();
  }

  std::string file(const YAML::Node& n, const std::string& path) const {
    auto s = string(n, path);
    check(!s.empty(), origin_, ": ", path, ": expected a path, got an empty string");
    fs::path p(s);
    return (p.is_absolute() ? p : fs::path(base_) / p).lexically_normal().string();
  }

  const std::string& origin() const { return origin_; }

  static std::string join(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

 private:
  void scalar(const YAML::Node& n, const std::string& path, const char* expected) const {
    if (!n.IsScalar()) fail(origin_, ": ", path, ": expected ", expected, ", got ", kind(n));
  }
  static const char* kind(const YAML::Node& n) {
    if (n.IsMap()) return "a mapping";
    if (n.IsSequence()) return "a list";
    if (n.IsNull()) return "nothing";
    return "a scalar";
  }
  std::string origin_, base_;
};

void read_train(const Reader& r, const YAML::Node& t, TrainerOptions& o) {
  r.keys(t, "train", {"epochs", "max_steps", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
                      "schedule", "warmup_steps", "step_size", "gamma", "grad_clip_norm", "checkpoint_every",
                      "log_every", "eval_batch_size", "on_nonfinite"});
  for (const auto& kv : t) {
    const auto key = kv.first.Scalar();  // r.keys checked that every key is a scalar
    const auto path = "train." + key;
    const auto& v = kv.second;
    if (key == "epochs") o.epochs(r.integer(v, path));
    else if (key == "max_steps") o.max_steps(r.integer(v, path));
    else if (key == "batch_size") o.batch_size(r.integer(v, path));
    else if (key == "optimizer") o.optimizer(r.string(v, path));
    else if (key == "lr") o.lr(r.number(v, path));
    else if (key == "momentum") o.momentum(r.number(v, path));
    else if (key == "nesterov") o.nesterov(r.boolean(v, path));
    else if (key == "weight_decay") o.weight_decay(r.number(v, path));
    else if (key == "schedule") o.schedule(r.string(v, path));
    else if (key == "warmup_steps") o.warmup_steps(r.integer(v, path));
    else if (key == "step_size") o.step_size(r.integer(v, path));
    else if (key == "gamma") o.gamma(r.number(v, path));
    else if (key == "grad_clip_norm") o.grad_clip_norm(r.number(v, path));
    else if (key == "checkpoint_every") o.checkpoint_every(r.integer(v, path));
    else if (key == "log_every") o.log_every(r.integer(v, path));
    else if (key == "eval_batch_size") o.eval_batch_size(r.integer(v, path));
    else if (key == "on_nonfinite") o.on_nonfinite(r.string(v, path));
  }
}

// A string value for to_yaml. yaml-cpp writes a string holding a carriage return or another
// control character as a plain scalar, and the parser then reads a different string back (found
// by fuzz_config: "s.pt\r" came back as "s.pt"). Such strings are written double-quoted, escaped.
struct Text {
  const std::string& value;
};

YAML::Emitter& operator<<(YAML::Emitter& out, const Text& text) {
  const bool control = std::any_of(text.value.begin(), text.value.end(), [](char ch) {
    const auto u = static_cast<unsigned char>(ch);
    return u < 0x20 || u == 0x7f;
  });
  if (control) out << YAML::DoubleQuoted;
  return out << text.value;
}

}  // namespace

RunConfig parse_config(const std::string& text, const std::string& origin, const std::string& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    fail(origin, ": line ", e.mark.line + 1, ": not valid YAML: ", e.msg);
  }
  Reader r(origin, base_dir);
  r.keys(root, "", {"seed", "device", "threads", "data", "teacher", "student", "loss", "train", "output"});
  RunConfig c;
  c.train.progress(true);
  if (root["seed"]) c.seed = r.unsigned_integer(root["seed"], "seed");
  if (root["device"]) c.device = r.string(root["device"], "device");
  if (root["threads"]) {
    const auto threads = r.integer(root["threads"], "threads");
    check(threads >= 0 && threads <= kMaxThreads, origin, ": threads: must be from 0 (all cores) to ", kMaxThreads,
          ", got ", threads);
    c.threads = static_cast<int>(threads);
  }

  if (const auto d = root["data"]) {
    r.keys(d, "data", {"format", "path", "train", "test", "features", "labels", "labeled", "hdf5"});
    if (d["format"]) c.data.format = r.string(d["format"], "data.format");
    check(c.data.format == "idx" || c.data.format == "hdf5", origin, ": data.format: expected idx or hdf5, got \"",
          c.data.format, "\"");
    if (d["path"]) c.data.path = r.file(d["path"], "data.path");
    auto h = d["hdf5"] ? d["hdf5"] : d;  // the hdf5 keys may sit in data or in data.hdf5
    if (d["hdf5"]) r.keys(h, "data.hdf5", {"train", "test", "features", "labels"});
    const std::string prefix = d["hdf5"] ? "data.hdf5." : "data.";
    if (h["train"]) c.data.train = r.file(h["train"], prefix + "train");
    if (h["test"]) c.data.test = r.file(h["test"], prefix + "test");
    if (h["features"]) c.data.features = r.string(h["features"], prefix + "features");
    if (h["labels"]) c.data.labels = r.string(h["labels"], prefix + "labels");
    if (d["labeled"]) c.data.labeled = r.integer(d["labeled"], "data.labeled");
    check(c.data.labeled >= 0, origin, ": data.labeled: must be >= 0, got ", c.data.labeled);
    check(c.data.format != "hdf5" || !c.data.train.empty(), origin, ": data.train: required when data.format is hdf5");
  }
  if (const auto t = root["teacher"]) {
    r.keys(t, "teacher", {"torchscript", "cache"});
    if (t["torchscript"]) c.teacher_torchscript = r.file(t["torchscript"], "teacher.torchscript");
    if (t["cache"]) c.teacher_cache = r.file(t["cache"], "teacher.cache");
    check(c.teacher_torchscript.empty() || c.teacher_cache.empty(), origin,
          ": teacher: give either torchscript or cache, not both");
  }
  const auto s = root["student"];
  check(static_cast<bool>(s), origin, ": student: required (student: {torchscript: student.pt})");
  r.keys(s, "student", {"torchscript"});
  check(static_cast<bool>(s["torchscript"]), origin, ": student.torchscript: required");
  c.student_torchscript = r.file(s["torchscript"], "student.torchscript");

  if (const auto l = root["loss"]) {
    r.keys(l, "loss", {"kind", "temperature", "alpha"});
    KDLossOptions lo;
    if (l["kind"]) c.loss_kind = r.string(l["kind"], "loss.kind");
    check(c.loss_kind == "kd", origin, ": loss.kind: expected kd, got \"", c.loss_kind, "\"");
    if (l["temperature"]) lo.temperature(r.number(l["temperature"], "loss.temperature"));
    if (l["alpha"]) lo.alpha(r.number(l["alpha"], "loss.alpha"));
    c.train.loss(lo);
  }
  if (root["train"]) read_train(r, root["train"], c.train);
  check(static_cast<bool>(root["output"]), origin, ": output: required (the run's output directory)");
  c.output = r.file(root["output"], "output");
  c.train.seed(c.seed).device(c.device).threads(c.threads);
  return c;
}

RunConfig load_config(const std::string& path) {
  const auto text = io::read_file(path);
  auto dir = fs::absolute(fs::path(path)).parent_path().string();
  return parse_config(text, path, dir);
}

std::string to_yaml(const RunConfig& c) {
  YAML::Emitter out;
  const auto& t = c.train;
  out << YAML::BeginMap;
  out << YAML::Key << "seed" << YAML::Value << c.seed;
  out << YAML::Key << "device" << YAML::Value << Text{c.device};
  out << YAML::Key << "threads" << YAML::Value << c.threads;
  out << YAML::Key << "data" << YAML::Value << YAML::BeginMap << YAML::Key << "format" << YAML::Value << Text{c.data.format};
  if (c.data.format == "idx") {
    out << YAML::Key << "path" << YAML::Value << Text{c.data.path};
  } else {
    out << YAML::Key << "train" << YAML::Value << Text{c.data.train};
    if (!c.data.test.empty()) out << YAML::Key << "test" << YAML::Value << Text{c.data.test};
    out << YAML::Key << "features" << YAML::Value << Text{c.data.features};
    out << YAML::Key << "labels" << YAML::Value << Text{c.data.labels};
  }
  out << YAML::Key << "labeled" << YAML::Value << c.data.labeled << YAML::EndMap;
  if (!c.teacher_torchscript.empty() || !c.teacher_cache.empty()) {
    out << YAML::Key << "teacher" << YAML::Value << YAML::BeginMap << YAML::Key
        << (c.teacher_cache.empty() ? "torchscript" : "cache") << YAML::Value
        << Text{c.teacher_cache.empty() ? c.teacher_torchscript : c.teacher_cache} << YAML::EndMap;
  }
  out << YAML::Key << "student" << YAML::Value << YAML::BeginMap << YAML::Key << "torchscript" << YAML::Value
      << Text{c.student_torchscript} << YAML::EndMap;
  out << YAML::Key << "loss" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "kind" << YAML::Value
      << Text{c.loss_kind} << YAML::Key << "temperature" << YAML::Value << t.loss().temperature() << YAML::Key << "alpha"
      << YAML::Value << t.loss().alpha() << YAML::EndMap;
  out << YAML::Key << "train" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "epochs" << YAML::Value << t.epochs() << YAML::Key << "max_steps" << YAML::Value << t.max_steps()
      << YAML::Key << "batch_size" << YAML::Value << t.batch_size() << YAML::Key << "optimizer" << YAML::Value
      << Text{t.optimizer()} << YAML::Key << "lr" << YAML::Value << t.lr() << YAML::Key << "momentum" << YAML::Value
      << t.momentum() << YAML::Key << "nesterov" << YAML::Value << t.nesterov() << YAML::Key << "weight_decay"
      << YAML::Value << t.weight_decay() << YAML::Key << "schedule" << YAML::Value << Text{t.schedule()} << YAML::Key
      << "warmup_steps" << YAML::Value << t.warmup_steps() << YAML::Key << "step_size" << YAML::Value << t.step_size()
      << YAML::Key << "gamma" << YAML::Value << t.gamma() << YAML::Key << "grad_clip_norm" << YAML::Value
      << t.grad_clip_norm() << YAML::Key << "checkpoint_every" << YAML::Value << t.checkpoint_every() << YAML::Key
      << "log_every" << YAML::Value << t.log_every() << YAML::Key << "eval_batch_size" << YAML::Value
      << t.eval_batch_size() << YAML::Key << "on_nonfinite" << YAML::Value << Text{t.on_nonfinite()};
  out << YAML::EndMap;
  out << YAML::Key << "output" << YAML::Value << Text{c.output};
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace kdistill
