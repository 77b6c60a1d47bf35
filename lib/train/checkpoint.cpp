#include "train/checkpoint.h"

#include <torch/serialize.h>
#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h>

#include "kdistill/core/error.h"
#include "train/checked_file.h"
#include "train/preflight.h"

namespace kdistill::detail {
namespace {

constexpr const char* kMagic = "KDISTILL-CKPT1";
const char* const kRequiredMeta[] = {"step", "epoch", "batch", "seed", "batch_size", "train_size", "steps_per_epoch",
                                     "threads"};

torch::Tensor bytes_to_tensor(const std::string& s) {
  auto t = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), s.data(), s.size());
  return t;
}

std::string tensor_to_bytes(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
}

void put(c10::impl::GenericDict& d, const std::string& key, const NamedTensors& tensors) {
  c10::List<std::string> names;
  c10::List<at::Tensor> values;
  for (const auto& [name, t] : tensors) {
    names.push_back(name);
    values.push_back(t.detach().cpu());
  }
  d.insert(key + "_names", names);
  d.insert(key + "s", values);
}

NamedTensors get(const c10::impl::GenericDict& d, const std::string& key, bool required) {
  NamedTensors out;
  if (!required && !d.contains(key + "_names")) return out;
  const auto names = d.at(key + "_names").toListRef();
  const auto values = d.at(key + "s").toListRef();
  TORCH_CHECK(names.size() == values.size(), key, ": ", names.size(), " names for ", values.size(), " tensors");
  for (size_t i = 0; i < names.size(); ++i) out.emplace_back(names[i].toStringRef(), values[i].toTensor());
  return out;
}

void match(const std::string& path, const char* owner, const char* what, const NamedTensors& current,
           const NamedTensors& saved) {
  check(current.size() == saved.size(), "checkpoint ", path, " has ", saved.size(), " ", what, "s but the ", owner,
        " has ", current.size());
  for (size_t i = 0; i < current.size(); ++i) {
    const auto& [name, t] = current[i];
    check(name == saved[i].first && t.sizes() == saved[i].second.sizes() &&
              t.scalar_type() == saved[i].second.scalar_type(),
          "checkpoint ", path, " does not match the ", owner, ": ", what, " ", saved[i].first, " ",
          saved[i].second.sizes(), " vs ", name, " ", t.sizes());
  }
}

NamedTensors from_items(const torch::OrderedDict<std::string, torch::Tensor>& items) {
  NamedTensors out;
  for (const auto& item : items) out.emplace_back(item.key(), item.value());
  return out;
}

}  // namespace

NamedTensors named_parameters(const Objective& objective) { return from_items(objective.named_parameters(true)); }
NamedTensors named_buffers(const Objective& objective) { return from_items(objective.named_buffers(true)); }

void write_checkpoint(const std::string& path, const std::map<std::string, int64_t>& meta, const Model& student,
                      const Objective& objective, const std::string& optimizer_bytes,
                      const std::string& objective_terms, const torch::Tensor& rank_rng) {
  c10::Dict<std::string, int64_t> m;
  for (const auto& [k, v] : meta) m.insert(k, v);
  c10::impl::GenericDict payload(c10::StringType::get(), c10::AnyType::get());
  payload.insert("format", int64_t{1});
  payload.insert("meta", m);
  put(payload, "param", student.named_parameters());
  put(payload, "buffer", student.named_buffers());
  put(payload, "objective_param", named_parameters(objective));
  put(payload, "objective_buffer", named_buffers(objective));
  payload.insert("optimizer", bytes_to_tensor(optimizer_bytes));
  payload.insert("objective_terms", objective_terms);
  payload.insert("rng", at::detail::getDefaultCPUGenerator().get_state());
  if (rank_rng.defined()) payload.insert("rank_rng", rank_rng);
  write_checked_file(path, kMagic, torch::pickle_save(payload));
}

Checkpoint read_checkpoint(const std::string& path) {
  auto bytes = read_checked_file(path, kMagic);
  Checkpoint c;
  c.path = path;
  try {
    auto root = torch::pickle_load(bytes).toGenericDict();
    check(root.at("format").toInt() == 1, "checkpoint ", path, " has an unknown format version");
    for (const auto& kv : root.at("meta").toGenericDict()) c.meta[kv.key().toStringRef()] = kv.value().toInt();
    c.params = get(root, "param", true);
    c.buffers = get(root, "buffer", true);
    c.objective_params = get(root, "objective_param", false);
    c.objective_buffers = get(root, "objective_buffer", false);
    c.optimizer = tensor_to_bytes(root.at("optimizer").toTensor());
    if (root.contains("objective_terms")) c.objective_terms = root.at("objective_terms").toStringRef();
    c.rng = root.at("rng").toTensor();
    if (root.contains("rank_rng")) c.rank_rng = root.at("rank_rng").toTensor();
  } catch (const c10::Error& e) {
    fail("checkpoint ", path, " cannot be parsed: ", first_line(e.what_without_backtrace()));
  }
  for (const char* key : kRequiredMeta) check(c.meta.count(key) == 1, "checkpoint ", path, " lacks the field ", key);
  c.meta.emplace("student_bf16", 0);  // written before precisions existed: float32
  return c;
}

void check_compatible(const Checkpoint& c, const Model& student, const Objective& objective,
                      const std::map<std::string, int64_t>& run) {
  match(c.path, "student", "parameter", student.named_parameters(), c.params);
  match(c.path, "student", "buffer", student.named_buffers(), c.buffers);
  match(c.path, "objective", "parameter", named_parameters(objective), c.objective_params);
  match(c.path, "objective", "buffer", named_buffers(objective), c.objective_buffers);
  for (const auto& [key, now] : run) {
    const int64_t was = c.meta.count(key) ? c.meta.at(key) : -1;
    check(was == now, "checkpoint ", c.path, " was written with ", key, " ", was, ", this run has ", key, " ", now);
  }
}

void restore_tensors(const Checkpoint& c, const Model& student, const Objective& objective) {
  torch::NoGradGuard no_grad;
  auto copy = [](const NamedTensors& dst, const NamedTensors& src) {
    for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_(src[i].second);
  };
  copy(student.named_parameters(), c.params);
  copy(student.named_buffers(), c.buffers);
  copy(named_parameters(objective), c.objective_params);
  copy(named_buffers(objective), c.objective_buffers);
}

}  // namespace kdistill::detail
