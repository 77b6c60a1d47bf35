#pragma once

#include <memory>
#include <string>

#include <torch/types.h>

#include "kdistill/data/tensor_dataset.h"
#include "kdistill/teachers/teacher.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// What a teacher-logit cache records about where its logits came from.
struct CacheInfo {
  int64_t samples = 0;
  int64_t classes = 0;
  std::string teacher_sha256;  ///< of the teacher's file; empty when the teacher had none
  std::string data_sha256;     ///< `data::features_sha256` of the data set the logits are for
  std::string kdistill_version;
  bool from_probs = false;     ///< the file held probabilities (`probs`), turned into logits
  std::string format = "dense";  ///< "dense" (`logits` or `probs`) or "topk"
  int64_t k = 0;                 ///< topk: classes kept per sample
  double bytes_per_row = 0;      ///< the stored (compressed) bytes of the cache's data per sample
};

/// Runs `teacher` once over every sample of `dataset`, in order and in batches of `batch_size`,
/// and returns its logits (float32 `[N, C]`, or `[N, L, V]` for a sequence model; CPU). Throws
/// `kdistill::Error` when the data set is empty, the teacher returns a wrong shape or class
/// count, or any logit is NaN or infinite.
torch::Tensor compute_teacher_logits(Teacher& teacher, const data::TensorDataset& dataset, int64_t batch_size = 256);

/// Runs `teacher` once over every sample of `dataset` (`compute_teacher_logits`) and
/// writes its logits to an HDF5 file: dataset `logits` (float32 `[N, C]`, chunked, gzip) with
/// attributes `teacher_sha256`, `data_sha256`, `kdistill_version`. The file appears atomically:
/// an interrupted run leaves no file (or the previous one), never a partial cache.
///
/// Example:
/// ```
/// kdistill::ModelTeacher teacher(kdistill::Model::load_torchscript("teacher.pt"));
/// kdistill::cache_teacher_logits(teacher, train, "logits.h5", kdistill::io::sha256_file("teacher.pt"));
/// ```
CacheInfo cache_teacher_logits(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path,
                               const std::string& teacher_sha256 = "", int64_t batch_size = 256);

/// Runs `teacher` once over every sample of `dataset` and writes a `topk` cache: per sample, the
/// `k` most probable classes at T = 1 (1 <= k <= C), as `topk_logprobs` (float16 `[N, k]`, the
/// log-probabilities, descending), `topk_indices` (int32 `[N, k]`) and `tail_logprob` (float32
/// `[N]`, the log of the probability outside them, from `topk_targets`), chunked and gzip-compressed,
/// with the attributes of a dense cache plus `format` = "topk", `k`, `classes` and `bytes_per_row`
/// (float64: the stored bytes per sample). Atomic like `cache_teacher_logits`. At k = 4 of 10
/// classes it stores about a third of a dense cache's bytes.
///
/// Example:
/// ```
/// kdistill::cache_teacher_topk(teacher, train, "top4.h5", 4, kdistill::io::sha256_file("teacher.pt"));
/// ```
CacheInfo cache_teacher_topk(Teacher& teacher, const data::TensorDataset& dataset, const std::string& path, int64_t k,
                             const std::string& teacher_sha256 = "", int64_t batch_size = 256);

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
/// Example:
/// ```
/// auto teacher = std::make_shared<kdistill::CachedTeacher>("logits.h5");
/// teacher->check_matches(train);   // sample count, class count and data hash
/// ```
class CachedTeacher : public Teacher {
 public:
  /// Loads the whole cache into memory; throws `kdistill::Error` naming the file and the field
  /// when it is missing, not HDF5, holds neither `logits` nor `probs` (nor a `topk` cache's
  /// datasets), holds non-finite values, or a `topk` cache's shapes, indices or `k` disagree.
  explicit CachedTeacher(const std::string& path);
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
  /// The logits (`topk`: the stand-in) and, for a `topk` cache, the rows' top-k targets.
  TeacherOutput outputs(const torch::Tensor& inputs, const torch::Tensor& indices,
                        const std::vector<std::string>& features = {}) override;

  /// Throws `kdistill::Error` saying which of sample count, class count (`classes` > 0) or data
  /// hash (when the file records one) differs from `dataset`.
  void check_matches(const data::TensorDataset& dataset, int64_t classes = 0) const;
  const CacheInfo& info() const { return info_; }
  /// The same cache over its first `n` rows (a training set whose last samples were held out for
  /// validation), named `name`. The data hash is dropped: it was recorded for every row.
  std::shared_ptr<CachedTeacher> first_rows(int64_t n, const std::string& name) const;
  /// All cached logits `[N, C]` (undefined for a `topk` cache).
  const torch::Tensor& all() const { return logits_; }

 private:
  CachedTeacher() = default;
  std::string path_;  ///< the file, or `memory:NAME`
  torch::Tensor logits_;
  TopKTargets topk_;  ///< a `topk` cache's rows: int64 indices, float32 log-probabilities
  CacheInfo info_;
};

}  // namespace kdistill
#pragma GCC visibility pop
