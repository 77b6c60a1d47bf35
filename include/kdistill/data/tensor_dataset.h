#pragma once

#include <functional>
#include <string>

#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::data {

/// An in-memory data set: features `[N, ...]` and integer targets `[N]`, or `[N, L]` for
/// sequence models (one target per position; see `token_windows`).
///
/// A target of -1 marks a sample without a label: a transfer-set sample that still gets the
/// teacher's soft targets during distillation but no hard (label) term. Per-position targets are
/// different: there -1 marks a position left out everywhere (padding, prompt), with no soft
/// target either.
///
/// Example:
/// ```
/// kdistill::data::TensorDataset ds(torch::randn({100, 20}), torch::randint(0, 3, {100}), 3);
/// auto few_labels = ds.with_label_budget(10);   // first 10 labels kept, the rest -1
/// ```
class TensorDataset {
 public:
  TensorDataset() = default;
  /// Takes `features` `[N, ...]` and `targets` `[N]` or `[N, L]` (any integer dtype, stored as int64).
  /// `num_classes` 0 infers it as max(target) + 1. Throws `kdistill::Error` on mismatched sizes,
  /// non-integer targets or labels outside [-1, num_classes).
  TensorDataset(torch::Tensor features, torch::Tensor targets, int64_t num_classes = 0, std::string name = "");

  /// Number of samples N.
  int64_t size() const { return features_.defined() ? features_.size(0) : 0; }
  /// Class count C.
  int64_t num_classes() const { return num_classes_; }
  /// A short name used in logs and reports, e.g. "fashion-mnist/train".
  const std::string& name() const { return name_; }
  /// Features `[N, ...]`.
  const torch::Tensor& features() const { return features_; }
  /// Targets `[N]` (or `[N, L]`), int64, -1 for unlabelled samples (left-out positions).
  const torch::Tensor& targets() const { return targets_; }
  /// Whether the targets are per position (`[N, L]`): next-token data for sequence models.
  bool is_sequence() const { return targets_.dim() == 2; }
  /// Shape of one sample, e.g. {1, 28, 28}.
  std::vector<int64_t> sample_shape() const;
  /// Number of targets >= 0: labelled samples, or counted positions for per-position targets.
  int64_t num_labelled() const;

  /// Rows [begin, end), sharing storage with this data set.
  TensorDataset slice(int64_t begin, int64_t end) const;
  /// The same samples, with the labels of all but the first `n` removed (set to -1).
  TensorDataset with_label_budget(int64_t n) const;
  /// Only the samples that have a label (at least one counted position).
  TensorDataset labelled_only() const;
  /// A copy on `device`.
  TensorDataset to(const torch::Device& device) const;

 private:
  torch::Tensor features_;
  torch::Tensor targets_;
  int64_t num_classes_ = 0;
  std::string name_;
};

/// Runs `fn(features, begin)` on `dataset`'s features `batch_size` rows at a time, in order (the
/// last batch may be shorter; `begin` is its first row), and concatenates the results along
/// dim 0. Each result must have as many rows as its batch. An empty data set gives an undefined
/// tensor. Throws `kdistill::Error` for `batch_size` < 1 or a result of the wrong length.
///
/// Example:
/// ```
/// auto logits = kdistill::data::map_batches(test, 256, [&](const torch::Tensor& x, int64_t) {
///   return model.forward(x).cpu();
/// });
/// ```
torch::Tensor map_batches(const TensorDataset& dataset, int64_t batch_size,
                          const std::function<torch::Tensor(const torch::Tensor& features, int64_t begin)>& fn);

}  // namespace kdistill::data
#pragma GCC visibility pop
