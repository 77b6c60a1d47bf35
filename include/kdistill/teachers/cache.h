#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "kdistill/data/tensor_dataset.h"
#include "kdistill/teachers/teacher.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {
namespace detail {
class CacheStream;
}

/// What a teacher-logit cache records about where its logits came from.
struct CacheInfo {
  int64_t samples = 0;
  int64_t classes = 0;
  std::string teacher_sha256;  ///< of the teacher's file; empty when the teacher had none
  std::string data_sha256;     ///< `data::features_sha256` of the data set the logits are for
  std::string kdistill_version;
  bool from_probs = false;     ///< the file held probabilities (`probs`), turned into logits
  std::string format = "dense";  ///< "dense" (`logits` or `probs`), "topk" or "sampled"
  int64_t k = 0;                 ///< topk: classes kept per sample
  int64_t draws = 0;             ///< sampled: classes drawn per sample (S)
  double temperature = 1.0;      ///< sampled: the temperature the draws were made at
  double bytes_per_row = 0;      ///< the stored (compressed) bytes of the cache's data per sample
  /// The rows per HDF5 chunk, shared by the cache's datasets: what a streamed read takes at once.
  int64_t chunk_rows = 0;
  bool streamed = false;         ///< read from disk block by block (`CacheReadOptions::stream`)
};

/// Options for `cache_teacher`.
struct CacheOptions {
  /// "dense" (every logit, float32), "topk" (the top `top_k` log-probabilities and the tail
  /// mass) or "sampled" (`samples` draws from the teacher at `temperature`, see `SampledTargets`).
  TORCH_ARG(std::string, format) = "dense";
  /// topk: classes kept per sample, in [1, C].
  TORCH_ARG(int64_t, top_k) = 0;
  /// sampled: classes drawn per sample (S >= 1).
  TORCH_ARG(int64_t, samples) = 0;
  /// sampled: the temperature of the distribution drawn from; training must use the same.
  TORCH_ARG(double, temperature) = 1.0;
  /// sampled: the seed of the draws (the same seed and batch size give the same file).
  TORCH_ARG(uint64_t, seed) = 0;
  /// Recorded as the attribute `teacher_sha256` (`io::sha256_file` of the teacher's file).
  TORCH_ARG(std::string, teacher_sha256) = "";
  /// Samples per teacher forward.
  TORCH_ARG(int64_t, batch_size) = 256;
};

/// Runs `teacher` once over every sample of `dataset`, in order and in batches of `batch_size`,
/// and returns its logits (float32 `[N, C]`, or `[N, L, V]` for a sequence model; CPU). Throws
/// `kdistill::Error` when the data set is empty, the teacher returns a wrong shape or class
/// count, or any logit is NaN or infinite.
torch::Tensor compute_teacher_logits(Teacher& teacher, const data::TensorDataset& dataset, int64_t batch_size = 256);

/// Runs `teacher` once over every sample of `dataset`, in order and in batches of
/// `options.batch_size()`, and writes its outputs to the HDF5 file `path` in `options.format()`
/// (layouts in docs/architecture.md):
/// - dense: `logits` (float32 `[N, C]`, or `[N, L, V]` for a sequence model);
/// - topk: `topk_logprobs` (float16 `[N, k]`, log-probabilities at T = 1, descending),
///   `topk_indices` (int32 `[N, k]`) and `tail_logprob` (float32 `[N]`, from `topk_targets`),
///   attributes `k` and `classes`;
/// - sampled: `sampled_indices` (int32 `[N, S]`, -1 pads), `sampled_weights` (float16 `[N, S]`),
///   `sampled_logprobs` (float16 `[N, S]`) and `top1_index` (int32 `[N]`) from `sampled_targets`,
///   attributes `draws` (S), `temperature`, `seed` and `classes`.
/// Every cache also has the attributes `teacher_sha256`, `data_sha256`, `kdistill_version`,
/// `format` and `bytes_per_row` (float64: the stored bytes per sample).
///
/// Batches are written as they come, in chunks of rows shared by all datasets (byte shuffle, then
/// gzip), so the cache is never held whole in memory and can be streamed back
/// (`CacheReadOptions::stream`). The file appears atomically: an interrupted run leaves no file
/// (or the previous one), never a partial cache. Throws `kdistill::Error` when the data set is
/// empty, an option is out of range, the teacher returns a wrong or changing shape, or a logit is
/// NaN or infinite (naming the sample).
///
/// Example:
/// ```
/// kdistill::cache_teacher(teacher, train, "top16.h5", kdistill::CacheOptions().format("topk").top_k(16));
/// ```
CacheInfo cache_teacher(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path,
                        const CacheOptions& options = {});

/// `cache_teacher` with format dense: dataset `logits` with its attributes.
///
/// Example:
/// ```
/// kdistill::ModelTeacher teacher(kdistill::Model::load_torchscript("teacher.pt"));
/// kdistill::cache_teacher_logits(teacher, train, "logits.h5", kdistill::io::sha256_file("teacher.pt"));
/// ```
CacheInfo cache_teacher_logits(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path,
                               const std::string& teacher_sha256 = "", int64_t batch_size = 256);

/// `cache_teacher` with format topk: per sample, the `k` most probable classes at T = 1
/// (1 <= k <= C). At k = 4 of 10 classes it stores about a third of a dense cache's bytes.
///
/// Example:
/// ```
/// kdistill::cache_teacher_topk(teacher, train, "top4.h5", 4, kdistill::io::sha256_file("teacher.pt"));
/// ```
CacheInfo cache_teacher_topk(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path, int64_t k,
                             const std::string& teacher_sha256 = "", int64_t batch_size = 256);

/// Options for reading a cache (`CachedTeacher`).
struct CacheReadOptions {
  /// Read the cache from disk block by block (one HDF5 chunk of every dataset at a time) instead
  /// of loading it whole: a cache larger than memory trains. The trainer then shuffles blocks of
  /// rows and rows within windows of blocks (`data::BatchOptions::block_rows`), and a background
  /// thread reads ahead in that order.
  TORCH_ARG(bool, stream) = false;
  /// Streamed: the most decoded bytes read ahead of training (MiB).
  TORCH_ARG(int64_t, read_ahead_mb) = 64;
};

/// A teacher read from a logit cache (offline distillation): logits by sample index, no model in
/// memory. Files holding `probs` instead (e.g. a gradient-boosted ensemble's predict_proba saved
/// with h5py) are accepted: logits = log(clamp(p, 1e-8)), which keeps softmax(logits) = p up to
/// the clamp.
///
/// A `topk` cache (`cache_teacher_topk`) gives its rows as `TeacherOutput::topk`, which the
/// divergence objectives (kd, soft_ce, reverse_kl, jsd, ...) use as k + 1 buckets
/// (`sparse_divergence`); objectives that need every class (dkd, mse) refuse it. Its `logits`
/// are a dense stand-in: the top-k log-probabilities, and the tail mass spread evenly over the
/// other classes (at least e^-100 each), so top-1 agreement and accuracy are exact.
///
/// A `sampled` cache gives its rows as `TeacherOutput::sampled`, which kd, soft_ce and the kl
/// divergence use as an unbiased estimate (`sampled_kl`) at the temperature the draws were made
/// at; other objectives refuse it. Its stand-in `logits` are the log of the draws' shares (-100
/// for classes never drawn) with the teacher's top-1 set to 1, so its argmax is the top-1.
///
/// By default the cache is loaded whole. With `CacheReadOptions().stream(true)` it is read block
/// by block, checked as each block arrives (a corrupt block fails training when it is reached,
/// naming the file, the dataset and the rows).
///
/// Example:
/// ```
/// auto teacher = std::make_shared<kdistill::CachedTeacher>("logits.h5");
/// teacher->check_matches(train);   // sample count, class count and data hash
/// auto big = std::make_shared<kdistill::CachedTeacher>("top64.h5", kdistill::CacheReadOptions().stream(true));
/// ```
class CachedTeacher : public Teacher {
 public:
  /// Opens the cache (loading it whole unless `options.stream()`); throws `kdistill::Error`
  /// naming the file and the field when it is missing, not HDF5, holds neither `logits` nor
  /// `probs` (nor a sparse cache's datasets), holds non-finite values, or a sparse cache's
  /// shapes, chunking, indices or attributes disagree.
  explicit CachedTeacher(const std::string& path, CacheReadOptions options = {});
  /// An in-memory cache over a copy of `logits` (`[N, C]`, finite): row i is the teacher's output
  /// for sample i of the training set. Without data augmentation it gives the student the same
  /// targets as the live teacher (up to rounding, from other batch sizes) for one forward pass
  /// over the data instead of one per step. No data hash is recorded, so `check_matches` checks
  /// only the sample and class counts.
  ///
  /// Example:
  /// ```
  /// auto cached = kdistill::CachedTeacher::from_logits(kdistill::compute_teacher_logits(live, train));
  /// ```
  static std::shared_ptr<CachedTeacher> from_logits(torch::Tensor logits, std::string name = "memory");
  /// Rows `indices` of the cache (the inputs are not used).
  torch::Tensor logits(const torch::Tensor& inputs, const torch::Tensor& indices) override;
  std::string describe() const override;
  int64_t samples() const override { return info_.samples; }
  int64_t top_k() const override { return info_.k; }
  bool dense() const override { return info_.format == "dense"; }
  /// Streamed: the rows per block (`CacheInfo::chunk_rows`); 0 when loaded whole.
  int64_t block_rows() const override;
  /// Streamed: reads ahead in this order; ignored when loaded whole.
  void plan(const torch::Tensor& order) override;
  /// The logits (sparse caches: the stand-in) and a sparse cache's targets.
  TeacherOutput outputs(const torch::Tensor& inputs, const torch::Tensor& indices,
                        const std::vector<std::string>& features = {}) override;

  /// Throws `kdistill::Error` saying which of sample count, class count (`classes` > 0) or data
  /// hash (when the file records one) differs from `dataset`.
  void check_matches(const data::TensorDataset& dataset, int64_t classes = 0) const;
  const CacheInfo& info() const { return info_; }
  /// The same cache over its first `n` rows (a training set whose last samples were held out for
  /// validation), named `name`. The data hash is dropped: it was recorded for every row.
  std::shared_ptr<CachedTeacher> first_rows(int64_t n, const std::string& name) const;
  /// All cached logits `[N, C]` of a dense cache loaded whole (undefined otherwise).
  const torch::Tensor& all() const { return columns_.empty() || info_.format != "dense" ? none_ : columns_[0]; }
  /// Streamed: how many blocks the background thread read, how many training waited for, and
  /// the most decoded bytes held at once (all 0 when loaded whole).
  struct StreamStats {
    int64_t blocks_read = 0, blocks_waited = 0, peak_bytes = 0;
  };
  StreamStats stream_stats() const;

 private:
  CachedTeacher() = default;
  std::vector<torch::Tensor> rows(const torch::Tensor& indices);
  std::string path_;  ///< the file, or `memory:NAME`
  /// Loaded whole: the format's datasets, decoded (dense: float32 logits; topk: int64 indices,
  /// float32 log-probabilities and tail; sampled: int64 indices, float32 weights and
  /// log-probabilities, int64 top-1). Streamed: empty, and `stream_` reads them.
  std::vector<torch::Tensor> columns_;
  std::shared_ptr<detail::CacheStream> stream_;
  torch::Tensor none_;
  CacheInfo info_;
};

}  // namespace kdistill
#pragma GCC visibility pop
