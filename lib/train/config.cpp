#include "kdistill/train/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
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
                      "log_every", "eval_batch_size", "on_nonfinite", "micro_batches", "token_reduction"});
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
    else if (key == "micro_batches") o.micro_batches(r.integer(v, path));
    else if (key == "token_reduction") o.token_reduction(parse_token_reduction(r.string(v, path)));
  }
}

const char* const kKinds = "kd, ce, soft_ce, mse, hint, at, dkd, reverse_kl, jsd, tvd, skew_kl or skew_reverse_kl";

bool is_divergence(const std::string& kind) {
  return kind == "reverse_kl" || kind == "jsd" || kind == "tvd" || kind == "skew_kl" || kind == "skew_reverse_kl";
}

bool has_temperature(const std::string& kind) {
  return kind == "kd" || kind == "soft_ce" || kind == "dkd" || is_divergence(kind);
}

// A number (a constant) or `{schedule: linear|cosine|step|constant, start, end, steps, epochs,
// step_size, gamma}`.
Schedule read_schedule(const Reader& r, const YAML::Node& n, const std::string& path) {
  if (!n.IsMap()) return Schedule(r.number(n, path));
  r.keys(n, path, {"schedule", "start", "end", "steps", "epochs", "step_size", "gamma"});
  check(static_cast<bool>(n["schedule"]), r.origin(), ": ", path,
        ".schedule: required in a schedule (constant, linear, cosine or step)");
  ScheduleOptions o;
  o.kind(r.string(n["schedule"], path + ".schedule"));
  if (n["start"]) o.start(r.number(n["start"], path + ".start"));
  o.end(o.start());
  if (n["end"]) o.end(r.number(n["end"], path + ".end"));
  if (n["steps"]) o.span_steps(r.integer(n["steps"], path + ".steps"));
  if (n["epochs"]) o.span_epochs(r.number(n["epochs"], path + ".epochs"));
  if (n["step_size"]) o.step_size(r.integer(n["step_size"], path + ".step_size"));
  if (n["gamma"]) o.gamma(r.number(n["gamma"], path + ".gamma"));
  try {
    return Schedule(o);
  } catch (const Error& e) {
    fail(r.origin(), ": ", path, ": ", std::string(e.what()).substr(std::string("Schedule: ").size()));
  }
}

// A tap name, or a list of them.
std::vector<std::string> read_names(const Reader& r, const YAML::Node& n, const std::string& path) {
  if (!n.IsSequence()) return {r.string(n, path)};
  std::vector<std::string> out;
  for (size_t i = 0; i < n.size(); ++i) out.push_back(r.string(n[i], path + "[" + std::to_string(i) + "]"));
  return out;
}

// One objective of the loss list (or the mapping form's one objective, `list` false).
ObjectiveConfig read_objective(const Reader& r, const YAML::Node& n, const std::string& path, bool list) {
  ObjectiveConfig o;
  if (!n.IsMap()) r.keys(n, path, {});  // names the node's kind
  if (n["kind"]) o.kind = r.string(n["kind"], path + ".kind");
  else check(!list, r.origin(), ": ", path, ".kind: required (one of ", kKinds, ")");
  std::set<std::string> allowed = {"kind", "weight", "name"};
  if (has_temperature(o.kind)) allowed.insert("temperature");
  if (o.kind == "kd") allowed.insert("alpha");
  else if (o.kind == "dkd") allowed.insert({"alpha", "beta"});
  else if (o.kind == "jsd") allowed.insert("beta");
  else if (o.kind == "skew_kl" || o.kind == "skew_reverse_kl") allowed.insert("skew");
  else if (o.kind == "hint") allowed.insert({"student", "teacher", "adapter"});
  else if (o.kind == "at") allowed.insert({"student", "teacher", "p"});
  else if (o.kind != "ce" && o.kind != "soft_ce" && o.kind != "mse" && o.kind != "tvd" && o.kind != "reverse_kl") {
    fail(r.origin(), ": ", path, ".kind: expected ", kKinds, ", got \"", o.kind, "\"");
  }
  if (!list) allowed.erase("name");
  r.keys(n, path, allowed);
  // Defaults by kind: Hinton's mapping form keeps 10% labels; DKD is mdistiller's; the
  // divergences are used at T = 1 in GKD and DistiLLM.
  o.alpha = o.kind == "kd" && !list ? 0.9 : 1.0;
  if (o.kind == "dkd") o.beta = 8.0;
  if (is_divergence(o.kind)) o.temperature = 1.0;
  o.name = o.kind;
  if (n["name"]) o.name = r.string(n["name"], path + ".name");
  check(!o.name.empty() && o.name.find('.') == std::string::npos, r.origin(), ": ", path,
        ".name: must be non-empty and hold no '.', got \"", o.name, "\"");
  if (n["weight"]) o.weight = read_schedule(r, n["weight"], path + ".weight");
  if (n["temperature"]) o.temperature = read_schedule(r, n["temperature"], path + ".temperature");
  check(o.temperature.positive(), r.origin(), ": ", path, ".temperature must be > 0, got ", o.temperature.describe());
  if (n["alpha"]) o.alpha = r.number(n["alpha"], path + ".alpha");
  if (n["beta"]) o.beta = r.number(n["beta"], path + ".beta");
  if (n["skew"]) o.skew = r.number(n["skew"], path + ".skew");
  if (n["p"]) o.p = r.number(n["p"], path + ".p");
  if (o.kind == "kd") {
    check(o.alpha >= 0 && o.alpha <= 1, r.origin(), ": ", path, ".alpha must be in [0, 1], got ", o.alpha);
  } else if (o.kind == "dkd") {
    check(o.alpha >= 0 && std::isfinite(o.alpha), r.origin(), ": ", path, ".alpha must be >= 0, got ", o.alpha);
    check(o.beta >= 0 && std::isfinite(o.beta), r.origin(), ": ", path, ".beta must be >= 0, got ", o.beta);
  }
  check(o.kind != "jsd" || (o.beta > 0 && o.beta < 1), r.origin(), ": ", path, ".beta must be in (0, 1), got ", o.beta);
  check(o.skew >= 0 && o.skew < 1, r.origin(), ": ", path, ".skew must be in [0, 1), got ", o.skew);
  check(o.p >= 1 && std::isfinite(o.p), r.origin(), ": ", path, ".p must be >= 1, got ", o.p);
  if (o.kind == "hint" || o.kind == "at") {
    for (const char* key : {"student", "teacher"}) {
      check(static_cast<bool>(n[key]), r.origin(), ": ", path, ".", key, ": required for ", o.kind == "at" ? "attention transfer" : "a hint",
            " (the ", key, " feature's submodule path)");
    }
  }
  if (o.kind == "hint") {
    o.student = r.string(n["student"], path + ".student");
    o.teacher = r.string(n["teacher"], path + ".teacher");
    if (n["adapter"]) o.adapter = r.string(n["adapter"], path + ".adapter");
    check(o.adapter == "conv1x1" || o.adapter == "linear", r.origin(), ": ", path,
          ".adapter: expected conv1x1 or linear, got \"", o.adapter, "\"");
  }
  if (o.kind == "at") {
    const auto s = read_names(r, n["student"], path + ".student"), t = read_names(r, n["teacher"], path + ".teacher");
    check(s.size() == t.size() && !s.empty(), r.origin(), ": ", path, ": student and teacher must list as many taps (",
          s.size(), " and ", t.size(), ")");
    for (size_t i = 0; i < s.size(); ++i) o.pairs.emplace_back(s[i], t[i]);
  }
  return o;
}

void read_loss(const Reader& r, const YAML::Node& l, RunConfig& c) {
  if (l.IsSequence()) {
    check(l.size() > 0, r.origin(), ": loss: the list is empty");
    std::set<std::string> names;
    for (size_t i = 0; i < l.size(); ++i) {
      const auto path = "loss[" + std::to_string(i) + "]";
      auto o = read_objective(r, l[i], path, true);
      check(names.insert(o.name).second, r.origin(), ": ", path, ".name: \"", o.name,
            "\" is used twice (give one of them a name:)");
      c.objectives.push_back(o);
    }
    return;
  }
  if (!l.IsMap()) r.keys(l, "loss", {});
  auto o = read_objective(r, l, "loss", false);
  c.loss_kind = o.kind;
  if (o.kind == "kd" && !l["weight"] && o.temperature.is_constant()) {
    // The mapping form of KD: Hinton's loss with its alpha (0.9 unless given), as before lists.
    KDLossOptions lo;
    if (l["temperature"]) lo.temperature(o.temperature.initial());
    if (l["alpha"]) lo.alpha(o.alpha);
    c.train.loss(lo);
    return;
  }
  c.objectives.push_back(o);
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

void write_schedule(YAML::Emitter& out, const Schedule& s) {
  if (s.is_constant()) {
    out << s.initial();
    return;
  }
  const auto& o = s.options();
  out << YAML::Flow << YAML::BeginMap << YAML::Key << "schedule" << YAML::Value << o.kind() << YAML::Key << "start"
      << YAML::Value << o.start();
  if (o.kind() == "step") {
    out << YAML::Key << "step_size" << YAML::Value << o.step_size() << YAML::Key << "gamma" << YAML::Value << o.gamma();
  } else {
    out << YAML::Key << "end" << YAML::Value << o.end();
    if (o.span_steps() > 0) out << YAML::Key << "steps" << YAML::Value << o.span_steps();
    if (o.span_epochs() > 0) out << YAML::Key << "epochs" << YAML::Value << o.span_epochs();
  }
  out << YAML::EndMap;
}

void write_objective(YAML::Emitter& out, const ObjectiveConfig& o) {
  out << YAML::Flow << YAML::BeginMap << YAML::Key << "kind" << YAML::Value << Text{o.kind} << YAML::Key << "name"
      << YAML::Value << Text{o.name} << YAML::Key << "weight" << YAML::Value;
  write_schedule(out, o.weight);
  if (has_temperature(o.kind)) {
    out << YAML::Key << "temperature" << YAML::Value;
    write_schedule(out, o.temperature);
  }
  if (o.kind == "kd" || o.kind == "dkd") out << YAML::Key << "alpha" << YAML::Value << o.alpha;
  if (o.kind == "jsd" || o.kind == "dkd") out << YAML::Key << "beta" << YAML::Value << o.beta;
  if (o.kind == "skew_kl" || o.kind == "skew_reverse_kl") out << YAML::Key << "skew" << YAML::Value << o.skew;
  if (o.kind == "hint") {
    out << YAML::Key << "student" << YAML::Value << Text{o.student} << YAML::Key << "teacher" << YAML::Value
        << Text{o.teacher} << YAML::Key << "adapter" << YAML::Value << Text{o.adapter};
  }
  if (o.kind == "at") {
    for (int side = 0; side < 2; ++side) {
      out << YAML::Key << (side == 0 ? "student" : "teacher") << YAML::Value << YAML::Flow << YAML::BeginSeq;
      for (const auto& [st, te] : o.pairs) out << Text{side == 0 ? st : te};
      out << YAML::EndSeq;
    }
    out << YAML::Key << "p" << YAML::Value << o.p;
  }
  out << YAML::EndMap;
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
  r.keys(root, "", {"seed", "device", "threads", "data", "teacher", "student", "loss", "train", "precision", "output",
                    "generations", "distributed"});
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
    r.keys(d, "data",
           {"format", "path", "train", "test", "features", "labels", "labeled", "validation", "hdf5", "length", "pad_id"});
    if (d["format"]) c.data.format = r.string(d["format"], "data.format");
    const auto& f = c.data.format;
    check(f == "idx" || f == "hdf5" || f == "text" || f == "tokens", origin,
          ": data.format: expected idx, hdf5, text or tokens, got \"", f, "\"");
    if (d["length"]) c.data.length = r.integer(d["length"], "data.length");
    check(c.data.length >= 1, origin, ": data.length: must be >= 1, got ", c.data.length);
    if (d["pad_id"]) c.data.pad_id = r.integer(d["pad_id"], "data.pad_id");
    check(f != "text" || d["path"], origin, ": data.path: required when data.format is text (a text file or directory)");
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
    if (d["validation"]) c.data.validation = r.integer(d["validation"], "data.validation");
    check(c.data.validation >= 0, origin, ": data.validation: must be >= 0, got ", c.data.validation);
    check((f != "hdf5" && f != "tokens") || !c.data.train.empty(), origin, ": data.train: required when data.format is ",
          f);
  }
  if (const auto t = root["teacher"]) {
    r.keys(t, "teacher", {"torchscript", "cache", "stream", "ensemble"});
    if (t["torchscript"]) c.teacher_torchscript = r.file(t["torchscript"], "teacher.torchscript");
    if (t["cache"]) c.teacher_cache = r.file(t["cache"], "teacher.cache");
    if (t["stream"]) c.teacher_stream = r.boolean(t["stream"], "teacher.stream");
    check(!c.teacher_stream || !c.teacher_cache.empty(), origin, ": teacher.stream: is for a cache (teacher: {cache: "
          "logits.h5, stream: true})");
    check((c.teacher_torchscript.empty() ? 0 : 1) + (c.teacher_cache.empty() ? 0 : 1) + (t["ensemble"] ? 1 : 0) <= 1,
          origin, ": teacher: give either torchscript or cache, not both (or an ensemble alone)");
    if (const auto e = t["ensemble"]) {
      check(e.IsSequence() && e.size() > 0, origin, ": teacher.ensemble: expected a non-empty list of members");
      for (size_t i = 0; i < e.size(); ++i) {
        const auto path = "teacher.ensemble[" + std::to_string(i) + "]";
        r.keys(e[i], path, {"torchscript", "cache", "stream", "weight"});
        EnsembleMemberConfig m;
        if (e[i]["torchscript"]) m.torchscript = r.file(e[i]["torchscript"], path + ".torchscript");
        if (e[i]["cache"]) m.cache = r.file(e[i]["cache"], path + ".cache");
        check(m.torchscript.empty() != m.cache.empty(), origin, ": ", path, ": give either torchscript or cache");
        if (e[i]["stream"]) m.stream = r.boolean(e[i]["stream"], path + ".stream");
        check(!m.stream || !m.cache.empty(), origin, ": ", path, ".stream: is for a cache");
        if (e[i]["weight"]) m.weight = r.number(e[i]["weight"], path + ".weight");
        check(m.weight > 0 && std::isfinite(m.weight), origin, ": ", path, ".weight: must be > 0, got ", m.weight);
        c.teacher_ensemble.push_back(m);
      }
    }
  }
  const auto s = root["student"];
  check(static_cast<bool>(s), origin, ": student: required (student: {torchscript: student.pt})");
  r.keys(s, "student", {"torchscript"});
  check(static_cast<bool>(s["torchscript"]), origin, ": student.torchscript: required");
  c.student_torchscript = r.file(s["torchscript"], "student.torchscript");

  if (const auto l = root["loss"]) read_loss(r, l, c);
  if (root["train"]) read_train(r, root["train"], c.train);
  if (const auto p = root["precision"]) {
    r.keys(p, "precision", {"teacher", "student"});
    PrecisionOptions po;
    if (p["teacher"]) po.teacher(parse_precision(r.string(p["teacher"], "precision.teacher"), origin + ": precision.teacher"));
    if (p["student"]) po.student(parse_precision(r.string(p["student"], "precision.student"), origin + ": precision.student"));
    c.train.precision(po);
  }
  if (root["generations"]) c.generations = r.integer(root["generations"], "generations");
  check(c.generations >= 1 && c.generations <= 100, origin, ": generations: must be from 1 to 100, got ", c.generations);
  if (const auto d = root["distributed"]) {
    r.keys(d, "distributed", {"backend", "timeout_s", "bucket_mb"});
    if (d["backend"]) c.distributed.backend(r.string(d["backend"], "distributed.backend"));
    const auto& b = c.distributed.backend();
    check(b.empty() || b == "gloo" || b == "nccl", origin, ": distributed.backend: expected gloo or nccl, got \"", b,
          "\"");
    if (d["timeout_s"]) c.distributed.timeout_s(r.number(d["timeout_s"], "distributed.timeout_s"));
    check(c.distributed.timeout_s() > 0, origin, ": distributed.timeout_s: must be > 0, got ",
          c.distributed.timeout_s());
    if (d["bucket_mb"]) c.train.bucket_mb(r.number(d["bucket_mb"], "distributed.bucket_mb"));
    check(c.train.bucket_mb() > 0, origin, ": distributed.bucket_mb: must be > 0, got ", c.train.bucket_mb());
  }
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
  } else if (c.data.format == "text") {
    out << YAML::Key << "path" << YAML::Value << Text{c.data.path};
    if (!c.data.test.empty()) out << YAML::Key << "test" << YAML::Value << Text{c.data.test};
    out << YAML::Key << "length" << YAML::Value << c.data.length;
  } else if (c.data.format == "tokens") {
    out << YAML::Key << "train" << YAML::Value << Text{c.data.train};
    if (!c.data.test.empty()) out << YAML::Key << "test" << YAML::Value << Text{c.data.test};
    out << YAML::Key << "pad_id" << YAML::Value << c.data.pad_id;
  } else {
    out << YAML::Key << "train" << YAML::Value << Text{c.data.train};
    if (!c.data.test.empty()) out << YAML::Key << "test" << YAML::Value << Text{c.data.test};
    out << YAML::Key << "features" << YAML::Value << Text{c.data.features};
    out << YAML::Key << "labels" << YAML::Value << Text{c.data.labels};
  }
  out << YAML::Key << "labeled" << YAML::Value << c.data.labeled << YAML::Key << "validation" << YAML::Value
      << c.data.validation << YAML::EndMap;
  if (!c.teacher_torchscript.empty() || !c.teacher_cache.empty()) {
    out << YAML::Key << "teacher" << YAML::Value << YAML::BeginMap << YAML::Key
        << (c.teacher_cache.empty() ? "torchscript" : "cache") << YAML::Value
        << Text{c.teacher_cache.empty() ? c.teacher_torchscript : c.teacher_cache};
    if (c.teacher_stream) out << YAML::Key << "stream" << YAML::Value << true;
    out << YAML::EndMap;
  } else if (!c.teacher_ensemble.empty()) {
    out << YAML::Key << "teacher" << YAML::Value << YAML::BeginMap << YAML::Key << "ensemble" << YAML::Value
        << YAML::BeginSeq;
    for (const auto& m : c.teacher_ensemble) {
      out << YAML::Flow << YAML::BeginMap << YAML::Key << (m.cache.empty() ? "torchscript" : "cache") << YAML::Value
          << Text{m.cache.empty() ? m.torchscript : m.cache};
      if (m.stream) out << YAML::Key << "stream" << YAML::Value << true;
      out << YAML::Key << "weight" << YAML::Value << m.weight << YAML::EndMap;
    }
    out << YAML::EndSeq << YAML::EndMap;
  }
  out << YAML::Key << "student" << YAML::Value << YAML::BeginMap << YAML::Key << "torchscript" << YAML::Value
      << Text{c.student_torchscript} << YAML::EndMap;
  out << YAML::Key << "loss" << YAML::Value;
  if (c.objectives.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::Key << "kind" << YAML::Value << Text{c.loss_kind} << YAML::Key
        << "temperature" << YAML::Value << t.loss().temperature() << YAML::Key << "alpha" << YAML::Value
        << t.loss().alpha() << YAML::EndMap;
  } else {
    out << YAML::BeginSeq;
    for (const auto& o : c.objectives) write_objective(out, o);
    out << YAML::EndSeq;
  }
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
      << t.eval_batch_size() << YAML::Key << "on_nonfinite" << YAML::Value << Text{t.on_nonfinite()} << YAML::Key
      << "micro_batches" << YAML::Value << t.micro_batches() << YAML::Key << "token_reduction" << YAML::Value
      << to_string(t.token_reduction());
  out << YAML::EndMap;
  out << YAML::Key << "precision" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "teacher"
      << YAML::Value << to_string(t.precision().teacher()) << YAML::Key << "student" << YAML::Value
      << to_string(t.precision().student()) << YAML::EndMap;
  out << YAML::Key << "output" << YAML::Value << Text{c.output};
  out << YAML::Key << "generations" << YAML::Value << c.generations;
  out << YAML::Key << "distributed" << YAML::Value << YAML::Flow << YAML::BeginMap;
  if (!c.distributed.backend().empty()) out << YAML::Key << "backend" << YAML::Value << c.distributed.backend();
  out << YAML::Key << "timeout_s" << YAML::Value << c.distributed.timeout_s();
  out << YAML::Key << "bucket_mb" << YAML::Value << c.train.bucket_mb() << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace kdistill
