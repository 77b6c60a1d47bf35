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

// Names the first row of `values` ([N, C]) holding a NaN or an infinity.
void check_finite_rows(const torch::Tensor& values, const std::string& what) {
  if (auto row = detail::first_nonfinite_row(values); row >= 0) fail(what, " has a NaN or infinite value in row ", row);
}

}  // namespace
torch::Tensor compute_teacher_logits(Teacher& teacher, const data::TensorDataset& dataset, int64_t batch_size) {
  check(dataset.size() > 0, "compute_teacher_logits: the data set '", dataset.name(), "' is empty");
  check(batch_size >= 1, "compute_teacher_logits: batch_size must be >= 1, got ", batch_size);
  int64_t classes = -1;
  auto logits = data::map_batches(dataset, batch_size, [&](const torch::Tensor& x, int64_t begin) {
    const int64_t len = x.size(0);
    auto l = teacher.logits(x, torch::arange(begin, begin + len, torch::kLong));
    check(l.dim() == 2 && l.size(0) == len, "compute_teacher_logits: the teacher returned shape ", l.sizes(),
          " for a batch of ", len);
    check(classes < 0 || l.size(1) == classes, "compute_teacher_logits: the teacher's class count changed");
    classes = l.size(1);
    return l.detach().to(torch::kCPU, torch::kFloat);
  });
  check_finite_rows(logits, "compute_teacher_logits: the teacher's logits");
  return logits;
}

CacheInfo cache_teacher_logits(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path,
                               const std::string& teacher_sha256, int64_t batch_size) {
  auto logits = compute_teacher_logits(teacher, dataset, batch_size);
  CacheInfo info;
  info.samples = logits.size(0);
  info.classes = logits.size(1);
  info.teacher_sha256 = teacher_sha256;
  info.data_sha256 = data::features_sha256(dataset);
  info.kdistill_version = kVersion;
  detail::write_h5("cache_teacher_logits", path, [&](H5::H5File& file) {
    detail::write_dataset(file, "logits", logits);
    detail::write_string_attr(file, "teacher_sha256", info.teacher_sha256);
    detail::write_string_attr(file, "data_sha256", info.data_sha256);
    detail::write_string_attr(file, "kdistill_version", info.kdistill_version);
  });
  return info;
}

CachedTeacher::CachedTeacher(const std::string& path) : path_(path) {
  constexpr const char* fn = "CachedTeacher";
  auto file = detail::open_h5(fn, path);
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
  for (auto [name, field] : {std::pair{"teacher_sha256", &info_.teacher_sha256}, {"data_sha256", &info_.data_sha256},
                             {"kdistill_version", &info_.kdistill_version}}) {
    *field = detail::read_string_attr(std::string(fn) + ": " + path, file, name);
  }
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
  auto out = logits_.index_select(0, indices.to(torch::kCPU, torch::kLong));
  return inputs.defined() && !inputs.device().is_cpu() ? out.to(inputs.device()) : out;
}

std::string CachedTeacher::describe() const { return "cache:" + path_; }

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
