#include "kdistill/teachers/cache.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "core/finite.h"
#include "io/hdf5_util.h"
#include "kdistill/core/error.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/version.h"
#include "teachers/cache_stream.h"

namespace kdistill {
namespace {

void write_cache_attrs(H5::H5File& file, const CacheInfo& info) {
  detail::write_string_attr(file, "teacher_sha256", info.teacher_sha256);
  detail::write_string_attr(file, "data_sha256", info.data_sha256);
  detail::write_string_attr(file, "kdistill_version", info.kdistill_version);
  detail::write_string_attr(file, "format", info.format);
  detail::write_double_attr(file, "bytes_per_row", info.bytes_per_row);
}

// Names the first row of `values` ([N, ...]) holding a NaN or an infinity, counting from `first_row`.
void check_finite_rows(const torch::Tensor& values, const std::string& what, int64_t first_row = 0) {
  if (auto row = detail::first_nonfinite_row(values); row >= 0) {
    fail(what, " has a NaN or infinite value in row ", first_row + row);
  }
}

// The datasets of each format, in the order the teacher keeps their columns.
std::vector<std::string> fields_of(const std::string& format) {
  if (format == "topk") return {"topk_logprobs", "topk_indices", "tail_logprob"};
  if (format == "sampled") return {"sampled_indices", "sampled_weights", "sampled_logprobs", "top1_index"};
  return {"logits"};
}

// Calls `fn(logits, begin)` for the teacher's logits of each batch of `dataset`, in order, after
// checking their shape (the same per sample throughout) and that they are finite.
void for_each_teacher_batch(const char* fn, Teacher& teacher, const data::TensorDataset& dataset, int64_t batch_size,
                            const std::function<void(const torch::Tensor&, int64_t)>& use) {
  check(dataset.size() > 0, fn, ": the data set '", dataset.name(), "' is empty");
  check(batch_size >= 1, fn, ": batch_size must be >= 1, got ", batch_size);
  std::vector<int64_t> row_shape;  // [C], or [L, V] for sequence models
  for (int64_t begin = 0; begin < dataset.size(); begin += batch_size) {
    const int64_t len = std::min(batch_size, dataset.size() - begin);
    auto l = teacher.logits(dataset.features().narrow(0, begin, len), torch::arange(begin, begin + len, torch::kLong));
    check(l.dim() >= 2 && l.size(0) == len, fn, ": the teacher returned shape ", l.sizes(), " for a batch of ", len);
    const auto shape = l.sizes().slice(1).vec();
    check(row_shape.empty() || shape == row_shape, fn, ": the teacher's output shape per sample changed from ",
          torch::IntArrayRef(row_shape), " to ", l.sizes().slice(1));
    row_shape = shape;
    l = l.detach().to(torch::kCPU, torch::kFloat);
    check_finite_rows(l, std::string(fn) + ": the teacher's logits", begin);
    use(l, begin);
  }
}

// The stored dtype of each dataset of a format.
std::vector<torch::ScalarType> stored_types(const std::string& format) {
  if (format == "topk") return {torch::kHalf, torch::kInt, torch::kFloat};
  if (format == "sampled") return {torch::kInt, torch::kHalf, torch::kHalf, torch::kInt};
  return {torch::kFloat};
}

// One batch of teacher logits as the format's columns.
std::vector<torch::Tensor> encode(const CacheOptions& o, const torch::Tensor& logits, at::Generator& gen) {
  if (o.format() == "topk") {
    auto t = topk_targets(logits, o.top_k());
    return {t.log_probs, t.indices, t.log_tail};
  }
  if (o.format() == "sampled") {
    auto t = sampled_targets(logits, o.samples(), o.temperature(), gen);
    return {t.indices, t.weights, t.log_probs, t.top1};
  }
  return {logits};
}

// Reads the attributes every cache has, and the format's.
CacheInfo read_info(const H5::H5File& file, const std::string& where) {
  CacheInfo info;
  for (auto [name, field] : {std::pair{"teacher_sha256", &info.teacher_sha256}, {"data_sha256", &info.data_sha256},
                             {"kdistill_version", &info.kdistill_version}, {"format", &info.format}}) {
    *field = detail::read_string_attr(where, file, name);
  }
  if (info.format.empty()) info.format = "dense";  // caches from before the attribute
  check(info.format == "dense" || info.format == "topk" || info.format == "sampled", where,
        ": attribute 'format' must be dense, topk or sampled, got \"", info.format, "\"");
  if (info.format == "dense") return info;
  info.classes = detail::read_int_attr(where, file, "classes");
  check(info.classes >= 1, where, ": attribute classes = ", info.classes, " must be >= 1");
  if (info.format == "topk") {
    info.k = detail::read_int_attr(where, file, "k");
    check(info.k >= 1 && info.k <= info.classes, where, ": attributes k = ", info.k, " and classes = ", info.classes,
          " must satisfy 1 <= k <= classes");
  } else {
    info.draws = detail::read_int_attr(where, file, "draws");
    info.temperature = detail::read_double_attr(where, file, "temperature");
    check(info.draws >= 1, where, ": attribute draws = ", info.draws, " must be >= 1");
    check(info.temperature > 0 && std::isfinite(info.temperature), where, ": attribute temperature = ",
          info.temperature, " must be > 0");
  }
  return info;
}

// Checks the format's datasets' shapes against each other and the attributes: [N, ..., width]
// for the per-class ones, [N, ...] for the per-position ones.
void check_shapes(const std::string& where, const std::vector<std::string>& names,
                  const std::vector<detail::DatasetLayout>& layouts, const CacheInfo& info) {
  const auto& first = layouts[0].shape;
  if (info.format == "dense") {
    check(first.size() >= 2 && first.back() > 0, where, ":", names[0], " must be [N, C] (or [N, L, C]), got shape ",
          torch::IntArrayRef(first));
    return;
  }
  const int64_t width = info.format == "topk" ? info.k : info.draws;
  check(first.size() >= 2 && first.back() == width, where, ":", names[0], " must be [N, ", info.format == "topk" ? "k" : "S",
        "] with ", info.format == "topk" ? "k = " : "S = ", width, ", got shape ", torch::IntArrayRef(first));
  const auto positions = std::vector<int64_t>(first.begin(), first.end() - 1);
  for (size_t i = 1; i < names.size(); ++i) {
    const bool per_position = names[i] == "tail_logprob" || names[i] == "top1_index";
    const auto& want = per_position ? positions : first;
    check(layouts[i].shape == want, where, ":", names[i], " must be [", torch::IntArrayRef(want), "], got shape ",
          torch::IntArrayRef(layouts[i].shape));
  }
  for (size_t i = 0; i < names.size(); ++i) {
    const bool integer = names[i] == "topk_indices" || names[i] == "sampled_indices" || names[i] == "top1_index";
    check(integer != at::isFloatingType(layouts[i].dtype), where, ":", names[i], " must hold ",
          integer ? "integers" : "floating-point values", ", got ", layouts[i].dtype);
  }
}

// Checks (and converts) one block of a cache's columns as read; `first_row` names rows in errors.
detail::BlockDecoder decoder(const std::string& where, const std::string& format, bool probs, int64_t classes) {
  return [=](std::vector<torch::Tensor>& c, int64_t first_row) {
    auto in_range = [&](const torch::Tensor& idx, int64_t low, const char* name) {
      if (idx.numel() == 0) return;
      check(idx.min().item<int64_t>() >= low && idx.max().item<int64_t>() < classes, where, ":", name,
            " must be in [", low, ", ", classes, ") (rows from ", first_row, ")");
    };
    if (format == "dense") {
      check_finite_rows(c[0], where, first_row);
      if (probs) {
        check((c[0] >= 0).all().item<bool>() && (c[0] <= 1 + 1e-4).all().item<bool>(), where,
              ":probs holds values outside [0, 1]");
        c[0] = c[0].clamp_min(1e-8).log();
      }
      return;
    }
    if (format == "topk") {
      c[1] = c[1].to(torch::kLong);
      in_range(c[1], 0, "topk_indices");
      check_finite_rows(c[0], where + ":topk_logprobs", first_row);
      check(!torch::isnan(c[2]).any().item<bool>() && (c[2] <= 1e-3).all().item<bool>(), where,
            ":tail_logprob must hold log-probabilities (<= 0, -inf for no tail)");
      return;
    }
    c[0] = c[0].to(torch::kLong);
    c[3] = c[3].to(torch::kLong);
    if (c[0].size(0) == 0) return;
    in_range(c[0], -1, "sampled_indices");
    in_range(c[3], 0, "top1_index");
    check_finite_rows(c[1], where + ":sampled_weights", first_row);
    check_finite_rows(c[2], where + ":sampled_logprobs", first_row);
    check((c[1] >= 0).all().item<bool>() && (c[1].sum(-1) - 1).abs().max().item<double>() < 1e-2, where,
          ":sampled_weights must be shares >= 0 that sum to 1 per position (rows from ", first_row, ")");
    check((c[2] <= 1e-3).all().item<bool>(), where, ":sampled_logprobs must hold log-probabilities (<= 0)");
  };
}

}  // namespace

torch::Tensor compute_teacher_logits(Teacher& teacher, const data::TensorDataset& dataset, int64_t batch_size) {
  std::vector<torch::Tensor> parts;
  for_each_teacher_batch("compute_teacher_logits", teacher, dataset, batch_size,
                         [&](const torch::Tensor& l, int64_t) { parts.push_back(l); });
  return torch::cat(parts);
}

CacheInfo cache_teacher(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path,
                        const CacheOptions& o) {
  constexpr const char* fn = "cache_teacher";
  const auto& format = o.format();
  check(format == "dense" || format == "topk" || format == "sampled", fn,
        ": format must be dense, topk or sampled, got \"", format, "\"");
  check(format == "topk" || o.top_k() == 0, fn, ": top_k is for format topk");
  check(format == "sampled" || o.samples() == 0, fn, ": samples is for format sampled");
  check(format != "sampled" || o.samples() >= 1, fn, ": format sampled needs samples >= 1, got ", o.samples());
  check(o.temperature() > 0 && std::isfinite(o.temperature()), fn, ": temperature must be > 0, got ", o.temperature());
  CacheInfo info;
  info.samples = dataset.size();
  info.teacher_sha256 = o.teacher_sha256();
  info.data_sha256 = data::features_sha256(dataset);
  info.kdistill_version = kVersion;
  info.format = format;
  info.k = o.top_k();
  info.draws = o.samples();
  info.temperature = format == "sampled" ? o.temperature() : 1.0;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed());
  const auto names = fields_of(format);
  const auto types = stored_types(format);
  detail::write_h5(fn, path, [&](H5::H5File& file) {
    std::vector<std::unique_ptr<detail::ChunkedRows>> sets;
    for_each_teacher_batch(fn, teacher, dataset, o.batch_size(), [&](const torch::Tensor& logits, int64_t) {
      if (sets.empty()) {
        info.classes = logits.size(-1);
        check(format != "topk" || (o.top_k() >= 1 && o.top_k() <= info.classes), fn, ": top_k must be in [1, ",
              info.classes, "] (the classes), got ", o.top_k());
      }
      auto columns = encode(o, logits, gen);
      if (sets.empty()) {
        // Chunks of about 256 KiB of rows, the same rows in every dataset: a block to stream.
        int64_t row_bytes = 0;
        for (size_t i = 0; i < columns.size(); ++i) {
          row_bytes += columns[i].numel() / columns[i].size(0) * static_cast<int64_t>(c10::elementSize(types[i]));
        }
        info.chunk_rows = detail::rows_per_block(row_bytes, info.samples);
        for (size_t i = 0; i < columns.size(); ++i) {
          sets.push_back(std::make_unique<detail::ChunkedRows>(file, names[i], types[i], columns[i].sizes().slice(1).vec(),
                                                               info.samples, info.chunk_rows));
        }
      }
      for (size_t i = 0; i < columns.size(); ++i) sets[i]->append(columns[i]);
    });
    double bytes = 0;
    for (auto& s : sets) {
      s->finish();
      bytes += s->stored_bytes();
    }
    info.bytes_per_row = bytes / static_cast<double>(info.samples);
    write_cache_attrs(file, info);
    if (format == "dense") return;
    detail::write_int_attr(file, "classes", info.classes);
    if (format == "topk") {
      detail::write_int_attr(file, "k", info.k);
    } else {
      detail::write_int_attr(file, "draws", info.draws);
      detail::write_double_attr(file, "temperature", info.temperature);
      detail::write_int_attr(file, "seed", static_cast<int64_t>(o.seed()));
    }
  });
  return info;
}

CacheInfo cache_teacher_logits(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path,
                               const std::string& teacher_sha256, int64_t batch_size) {
  return cache_teacher(teacher, dataset, path, CacheOptions().teacher_sha256(teacher_sha256).batch_size(batch_size));
}

CacheInfo cache_teacher_topk(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path, int64_t k,
                             const std::string& teacher_sha256, int64_t batch_size) {
  return cache_teacher(teacher, dataset, path,
                       CacheOptions().format("topk").top_k(k).teacher_sha256(teacher_sha256).batch_size(batch_size));
}

CachedTeacher::CachedTeacher(const std::string& path, CacheReadOptions options) : path_(path) {
  constexpr const char* fn = "CachedTeacher";
  const std::string where = std::string(fn) + ": " + path;
  auto names = [&] {
    auto file = detail::open_h5(fn, path);
    info_ = read_info(file, where);
    if (info_.format != "dense") return fields_of(info_.format);
    const bool has_logits = detail::has_dataset(file, "logits");
    check(has_logits || detail::has_dataset(file, "probs"), fn, ": ", path,
          " holds neither a 'logits' nor a 'probs' dataset");
    info_.from_probs = !has_logits;
    return std::vector<std::string>{has_logits ? "logits" : "probs"};
  }();
  check(options.read_ahead_mb() >= 0, fn, ": read_ahead_mb must be >= 0, got ", options.read_ahead_mb());
  // Opening checks the datasets' row counts and chunking; the decoder runs on each block read.
  // (A dense cache's decoder needs no class count: it is known once the layouts are.)
  auto stream = std::make_shared<detail::CacheStream>(path, names,
                                                      decoder(where, info_.format, info_.from_probs, info_.classes),
                                                      options.read_ahead_mb() << 20, options.stream());
  const auto& layouts = stream->layouts();
  check_shapes(where, names, layouts, info_);
  if (info_.format == "dense") info_.classes = layouts[0].shape.back();
  info_.samples = stream->rows();
  info_.chunk_rows = stream->block_rows();
  info_.bytes_per_row = stream->stored_bytes() / static_cast<double>(info_.samples);
  if (options.stream()) {
    stream_ = std::move(stream);
    info_.streamed = true;
    return;
  }
  // Loaded whole: block by block, each decoded and checked as a streamed one is.
  std::vector<std::vector<torch::Tensor>> blocks(names.size());
  for (int64_t begin = 0; begin < info_.samples; begin += info_.chunk_rows) {
    auto c = stream->gather(torch::arange(begin, std::min(begin + info_.chunk_rows, info_.samples), torch::kLong));
    for (size_t i = 0; i < c.size(); ++i) blocks[i].push_back(std::move(c[i]));
  }
  for (auto& b : blocks) columns_.push_back(b.size() == 1 ? b[0] : torch::cat(b));
}

std::shared_ptr<CachedTeacher> CachedTeacher::first_rows(int64_t n, const std::string& name) const {
  check(n >= 1 && n <= info_.samples, "CachedTeacher::first_rows: n must be in [1, ", info_.samples, "], got ", n);
  std::shared_ptr<CachedTeacher> t(new CachedTeacher(*this));
  t->path_ = name;
  t->info_.samples = n;
  t->info_.data_sha256.clear();  // recorded for every row
  for (auto& c : t->columns_) c = c.narrow(0, 0, n);
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
  t->columns_ = {std::move(values)};
  t->info_.samples = t->columns_[0].size(0);
  t->info_.classes = t->columns_[0].size(1);
  t->info_.kdistill_version = kVersion;
  return t;
}

std::vector<torch::Tensor> CachedTeacher::rows(const torch::Tensor& indices) {
  const auto r = indices.to(torch::kCPU, torch::kLong);
  if (r.numel() > 0) {
    check(r.min().item<int64_t>() >= 0 && r.max().item<int64_t>() < info_.samples, "teacher cache ", path_,
          ": rows must be in [0, ", info_.samples, ")");
  }
  if (stream_) return stream_->gather(r);
  std::vector<torch::Tensor> out;
  for (const auto& c : columns_) out.push_back(c.index_select(0, r));
  return out;
}

int64_t CachedTeacher::block_rows() const { return stream_ ? stream_->block_rows() : 0; }

void CachedTeacher::plan(const torch::Tensor& order) {
  if (stream_) stream_->plan(order);
}

CachedTeacher::StreamStats CachedTeacher::stream_stats() const {
  if (!stream_) return {};
  const auto s = stream_->stats();
  return {s.blocks_read, s.blocks_waited, s.peak_bytes};
}

torch::Tensor CachedTeacher::logits(const torch::Tensor& inputs, const torch::Tensor& indices) {
  return outputs(inputs, indices).logits;
}

TeacherOutput CachedTeacher::outputs(const torch::Tensor& inputs, const torch::Tensor& indices,
                                     const std::vector<std::string>& features) {
  if (!features.empty()) return Teacher::outputs(inputs, indices, features);  // refuses, naming the cache
  const auto device = inputs.defined() ? inputs.device() : torch::Device(torch::kCPU);
  auto c = rows(indices);
  for (auto& t : c) t = t.to(device);
  TeacherOutput out;
  const int64_t classes = info_.classes;
  if (info_.format == "dense") {
    out.logits = std::move(c[0]);
    return out;
  }
  auto shape = c[0].sizes().vec();
  shape.back() = classes;
  if (info_.format == "topk") {
    out.topk = TopKTargets{c[1], c[0], c[2]};
    // The dense stand-in: top-k log-probabilities, the tail spread evenly over the other classes.
    const int64_t k = info_.k;
    auto fill = k < classes ? (out.topk.log_tail - std::log(static_cast<double>(classes - k))).clamp_min(-100.0)
                            : torch::full_like(out.topk.log_tail, -100.0);
    out.logits = fill.unsqueeze(-1).expand(shape).contiguous().scatter(-1, out.topk.indices, out.topk.log_probs);
    return out;
  }
  out.sampled = SampledTargets{c[0], c[1], c[2], c[3], info_.temperature};
  // The stand-in: the log of each class's share of the draws, and the top-1 above them all.
  // Padding goes to a spare last class, so that it never overwrites a drawn class's share.
  auto wide_shape = shape;
  wide_shape.back() = classes + 1;
  auto fill = torch::full(wide_shape, -100.0, c[1].options());
  const auto drawn = out.sampled.indices.ge(0);
  fill.scatter_(-1, torch::where(drawn, out.sampled.indices, torch::full_like(out.sampled.indices, classes)),
                out.sampled.weights.clamp_min(1e-30).log());
  out.logits = fill.narrow(-1, 0, classes).contiguous().scatter_(-1, out.sampled.top1.unsqueeze(-1), 1.0);
  return out;
}

std::string CachedTeacher::describe() const {
  std::string kind;
  if (info_.format == "topk") kind = " (top-" + std::to_string(info_.k) + ")";
  if (info_.format == "sampled") kind = " (" + std::to_string(info_.draws) + " draws)";
  return "cache:" + path_ + kind + (info_.streamed ? ", streamed" : "");
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
