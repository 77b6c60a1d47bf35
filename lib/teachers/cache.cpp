#include "kdistill/teachers/cache.h"

#include <torch/torch.h>

#include "core/finite.h"
#include "io/hdf5_util.h"
#include "kdistill/core/error.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/version.h"

namespace kdistill {
namespace {

// What every cache records of where its logits `[N, C]` came from.
CacheInfo provenance(const torch::Tensor& logits, const data::TensorDataset& dataset, const std::string& teacher_sha256) {
  CacheInfo info;
  info.samples = logits.size(0);
  info.classes = logits.size(1);
  info.teacher_sha256 = teacher_sha256;
  info.data_sha256 = data::features_sha256(dataset);
  info.kdistill_version = kVersion;
  return info;
}

void write_cache_attrs(H5::H5File& file, const CacheInfo& info) {
  detail::write_string_attr(file, "teacher_sha256", info.teacher_sha256);
  detail::write_string_attr(file, "data_sha256", info.data_sha256);
  detail::write_string_attr(file, "kdistill_version", info.kdistill_version);
  detail::write_string_attr(file, "format", info.format);
  detail::write_double_attr(file, "bytes_per_row", info.bytes_per_row);
}

// Names the first row of `values` ([N, C]) holding a NaN or an infinity.
void check_finite_rows(const torch::Tensor& values, const std::string& what) {
  if (auto row = detail::first_nonfinite_row(values); row >= 0) fail(what, " has a NaN or infinite value in row ", row);
}

// A `topk` cache's datasets, checked against each other and against its attributes k and classes.
struct TopKFile {
  TopKTargets targets;
  int64_t k = 0, classes = 0;
};

TopKFile read_topk(const H5::H5File& file, const std::string& path) {
  const std::string where = "CachedTeacher: " + path;
  const int64_t k = detail::read_int_attr(where, file, "k"), classes = detail::read_int_attr(where, file, "classes");
  check(classes >= 1 && k >= 1 && k <= classes, where, ": attributes k = ", k, " and classes = ", classes,
        " must satisfy 1 <= k <= classes");
  auto lp = detail::read_dataset("CachedTeacher", file, path, "topk_logprobs").to(torch::kFloat);
  auto idx = detail::read_dataset("CachedTeacher", file, path, "topk_indices");
  auto tail = detail::read_dataset("CachedTeacher", file, path, "tail_logprob").to(torch::kFloat);
  check(lp.dim() == 2 && lp.size(0) > 0 && lp.size(1) == k, where, ":topk_logprobs must be [N, k] with k = ", k,
        ", got shape ", lp.sizes());
  check(!idx.is_floating_point() && idx.sizes() == lp.sizes(), where, ":topk_indices must be integers of shape ",
        lp.sizes(), ", got ", idx.scalar_type(), " ", idx.sizes());
  check(tail.dim() == 1 && tail.size(0) == lp.size(0), where, ":tail_logprob must be [", lp.size(0), "], got shape ",
        tail.sizes());
  idx = idx.to(torch::kLong);
  check(idx.min().item<int64_t>() >= 0 && idx.max().item<int64_t>() < classes, where,
        ":topk_indices must be in [0, ", classes, ")");
  if (auto row = detail::first_nonfinite_row(lp); row >= 0) {
    fail(where, ":topk_logprobs has a NaN or infinite value in row ", row);
  }
  check(!torch::isnan(tail).any().item<bool>() && (tail <= 1e-3).all().item<bool>(), where,
        ":tail_logprob must hold log-probabilities (<= 0, -inf for no tail)");
  return {TopKTargets{idx.contiguous(), lp.contiguous(), tail.contiguous()}, k, classes};
}

}  // namespace

torch::Tensor compute_teacher_logits(Teacher& teacher, const data::TensorDataset& dataset, int64_t batch_size) {
  check(dataset.size() > 0, "compute_teacher_logits: the data set '", dataset.name(), "' is empty");
  check(batch_size >= 1, "compute_teacher_logits: batch_size must be >= 1, got ", batch_size);
  std::vector<int64_t> row_shape;  // [C], or [L, V] for sequence models
  auto logits = data::map_batches(dataset, batch_size, [&](const torch::Tensor& x, int64_t begin) {
    const int64_t len = x.size(0);
    auto l = teacher.logits(x, torch::arange(begin, begin + len, torch::kLong));
    check(l.dim() >= 2 && l.size(0) == len, "compute_teacher_logits: the teacher returned shape ", l.sizes(),
          " for a batch of ", len);
    const auto shape = l.sizes().slice(1).vec();
    check(row_shape.empty() || shape == row_shape, "compute_teacher_logits: the teacher's output shape per sample "
          "changed from ", torch::IntArrayRef(row_shape), " to ", l.sizes().slice(1));
    row_shape = shape;
    return l.detach().to(torch::kCPU, torch::kFloat);
  });
  check_finite_rows(logits, "compute_teacher_logits: the teacher's logits");
  return logits;
}

CacheInfo cache_teacher_logits(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path,
                               const std::string& teacher_sha256, int64_t batch_size) {
  auto logits = compute_teacher_logits(teacher, dataset, batch_size);
  CacheInfo info = provenance(logits, dataset, teacher_sha256);
  detail::write_h5("cache_teacher_logits", path, [&](H5::H5File& file) {
    auto ds = detail::write_dataset(file, "logits", logits);
    info.bytes_per_row = static_cast<double>(ds.getStorageSize()) / static_cast<double>(info.samples);
    write_cache_attrs(file, info);
  });
  return info;
}

CacheInfo cache_teacher_topk(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path, int64_t k,
                             const std::string& teacher_sha256, int64_t batch_size) {
  auto logits = compute_teacher_logits(teacher, dataset, batch_size);
  check(k >= 1 && k <= logits.size(1), "cache_teacher_topk: k must be in [1, ", logits.size(1), "] (the classes), got ",
        k);
  auto targets = topk_targets(logits, k);
  CacheInfo info = provenance(logits, dataset, teacher_sha256);
  info.format = "topk";
  info.k = k;
  detail::write_h5("cache_teacher_topk", path, [&](H5::H5File& file) {
    double bytes = 0;
    bytes += detail::write_dataset(file, "topk_logprobs", targets.log_probs.to(torch::kHalf)).getStorageSize();
    bytes += detail::write_dataset(file, "topk_indices", targets.indices.to(torch::kInt)).getStorageSize();
    bytes += detail::write_dataset(file, "tail_logprob", targets.log_tail.to(torch::kFloat)).getStorageSize();
    info.bytes_per_row = bytes / static_cast<double>(info.samples);
    write_cache_attrs(file, info);
    detail::write_int_attr(file, "k", k);
    detail::write_int_attr(file, "classes", info.classes);
  });
  return info;
}

CachedTeacher::CachedTeacher(const std::string& path) : path_(path) {
  constexpr const char* fn = "CachedTeacher";
  auto file = detail::open_h5(fn, path);
  const std::string where = std::string(fn) + ": " + path;
  for (auto [name, field] : {std::pair{"teacher_sha256", &info_.teacher_sha256}, {"data_sha256", &info_.data_sha256},
                             {"kdistill_version", &info_.kdistill_version}, {"format", &info_.format}}) {
    *field = detail::read_string_attr(where, file, name);
  }
  if (info_.format.empty()) info_.format = "dense";  // caches from before the attribute
  if (info_.format == "topk") {
    auto topk = read_topk(file, path);
    topk_ = std::move(topk.targets);
    info_.k = topk.k;
    info_.classes = topk.classes;
    info_.samples = topk_.log_probs.size(0);
    return;
  }
  check(info_.format == "dense", where, ": attribute 'format' must be dense or topk, got \"", info_.format, "\"");
  const bool has_logits = detail::has_dataset(file, "logits");
  check(has_logits || detail::has_dataset(file, "probs"), fn, ": ", path,
        " holds neither a 'logits' nor a 'probs' dataset");
  auto values = detail::read_dataset(fn, file, path, has_logits ? "logits" : "probs").to(torch::kFloat);
  check(values.dim() == 2 && values.size(0) > 0 && values.size(1) > 0, fn, ": ", path, ":",
        has_logits ? "logits" : "probs", " must be [N, C], got shape ", values.sizes());
  check_finite_rows(values, std::string(fn) + ": " + path);
  if (!has_logits) {
    check((values >= 0).all().item<bool>() && (values <= 1 + 1e-4).all().item<bool>(), fn, ": ", path,
          ":probs holds values outside [0, 1]");
    values = values.clamp_min(1e-8).log();
    info_.from_probs = true;
  }
  logits_ = values.contiguous();
  info_.samples = logits_.size(0);
  info_.classes = logits_.size(1);
}

std::shared_ptr<CachedTeacher> CachedTeacher::first_rows(int64_t n, const std::string& name) const {
  check(n >= 1 && n <= info_.samples, "CachedTeacher::first_rows: n must be in [1, ", info_.samples, "], got ", n);
  std::shared_ptr<CachedTeacher> t(new CachedTeacher(*this));
  t->path_ = name;
  t->info_.samples = n;
  t->info_.data_sha256.clear();  // recorded for every row
  if (logits_.defined()) t->logits_ = logits_.narrow(0, 0, n);
  if (topk_.indices.defined()) {
    t->topk_ = TopKTargets{topk_.indices.narrow(0, 0, n), topk_.log_probs.narrow(0, 0, n), topk_.log_tail.narrow(0, 0, n)};
  }
  return t;
}

std::shared_ptr<CachedTeacher> CachedTeacher::from_logits(torch::Tensor logits, std::string name) {
  check(logits.defined() && logits.dim() == 2 && logits.size(0) > 0 && logits.size(1) > 0,
        "CachedTeacher::from_logits: logits must be [N, C] with N, C > 0, got ",
        logits.defined() ? logits.sizes() : torch::IntArrayRef{});
  // A copy: the caller's tensor changing later must not change the teacher.
  auto values = logits.detach().to(torch::kCPU, torch::kFloat, /*non_blocking=*/false, /*copy=*/true).contiguous();
  check_finite_rows(values, "CachedTeacher::from_logits: '" + name + "'");
  std::shared_ptr<CachedTeacher> t(new CachedTeacher());
  t->path_ = "memory:" + name;
  t->logits_ = std::move(values);
  t->info_.samples = t->logits_.size(0);
  t->info_.classes = t->logits_.size(1);
  t->info_.kdistill_version = kVersion;
  return t;
}

torch::Tensor CachedTeacher::logits(const torch::Tensor& inputs, const torch::Tensor& indices) {
  return outputs(inputs, indices).logits;
}

TeacherOutput CachedTeacher::outputs(const torch::Tensor& inputs, const torch::Tensor& indices,
                                     const std::vector<std::string>& features) {
  if (!features.empty()) return Teacher::outputs(inputs, indices, features);  // refuses, naming the cache
  const auto rows = indices.to(torch::kCPU, torch::kLong);
  const auto device = inputs.defined() ? inputs.device() : torch::Device(torch::kCPU);
  TeacherOutput out;
  if (!topk_.indices.defined()) {
    out.logits = logits_.index_select(0, rows).to(device);
    return out;
  }
  out.topk = TopKTargets{topk_.indices.index_select(0, rows).to(device), topk_.log_probs.index_select(0, rows).to(device),
                         topk_.log_tail.index_select(0, rows).to(device)};
  // The dense stand-in: top-k log-probabilities, the tail spread evenly over the other classes.
  const int64_t k = info_.k, classes = info_.classes;
  auto fill = k < classes ? (out.topk.log_tail - std::log(static_cast<double>(classes - k))).clamp_min(-100.0)
                          : torch::full_like(out.topk.log_tail, -100.0);
  out.logits = fill.unsqueeze(1).expand({rows.size(0), classes}).contiguous().scatter(1, out.topk.indices,
                                                                                       out.topk.log_probs);
  return out;
}

std::string CachedTeacher::describe() const {
  return "cache:" + path_ + (info_.format == "topk" ? " (top-" + std::to_string(info_.k) + ")" : "");
}

void CachedTeacher::check_matches(const data::TensorDataset& dataset, int64_t classes) const {
  check(info_.samples == dataset.size(), "teacher cache ", path_, " holds logits for ", info_.samples,
        " samples but the training set has ", dataset.size());
  if (classes > 0) {
    check(info_.classes == classes, "teacher cache ", path_, " holds ", info_.classes,
          " classes but the data set has ", classes);
  }
  if (!info_.data_sha256.empty()) {
    const auto actual = data::features_sha256(dataset);
    check(info_.data_sha256 == actual, "teacher cache ", path_, " was made for other data: data_sha256 ",
          info_.data_sha256.substr(0, 12), "... but the training set's is ", actual.substr(0, 12), "...");
  }
}

}  // namespace kdistill
