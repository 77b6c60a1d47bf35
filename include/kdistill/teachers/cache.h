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
};

/// Runs `teacher` once over every sample of `dataset`, in order and in batches of `batch_size`,
/// and returns its logits (float32 `[N, C]`, CPU). Throws `kdistill::Error` when the data set is
/// empty, the teacher returns a wrong shape or class count, or any logit is NaN or infinite.
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

/// A teacher read from a logit cache (offline distillation): logits by sample index, no model in
/// memory. Files holding `probs` instead (e.g. a gradient-boosted ensemble's predict_proba saved
/// with h5py) are accepted: logits = log(clamp(p, 1e-8)), which keeps softmax(logits) = p up to
/// the clamp.
///
/// Example:
/// ```
/// auto teacher = std::make_shared<kdistill::CachedTeacher>("logits.h5");
/// teacher->check_matches(train);   // sample count, class count and data hash
/// ```
class CachedTeacher : public Teacher {
 public:
  /// Loads the whole cache into memory; throws `kdistill::Error` naming the file when it is
  /// missing, not HDF5, holds neither `logits` nor `probs`, or holds non-finite values.
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

  /// Throws `kdistill::Error` saying which of sample count, class count (`classes` > 0) or data
  /// hash (when the file records one) differs from `dataset`.
  void check_matches(const data::TensorDataset& dataset, int64_t classes = 0) const;
  const CacheInfo& info() const { return info_; }
  /// All cached logits `[N, C]`.
  const torch::Tensor& all() const { return logits_; }

 private:
  CachedTeacher() = default;
  std::string path_;  ///< the file, or `memory:NAME`
  torch::Tensor logits_;
  CacheInfo info_;
};

}  // namespace kdistill
#pragma GCC visibility pop
