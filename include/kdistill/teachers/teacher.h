#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "kdistill/core/precision.h"
#include "kdistill/losses/sparse.h"
#include "kdistill/models/model.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// A teacher's outputs for one batch (see `Teacher::outputs`).
struct TeacherOutput {
  torch::Tensor logits;  ///< `[B, C]`: what `Teacher::logits` returns
  /// An ensemble's members' logits and their weights (summing to 1); empty for a single teacher.
  std::vector<torch::Tensor> member_logits;
  std::vector<double> member_weights;
  std::map<std::string, torch::Tensor> features;  ///< the taps asked for, by name
  /// From a top-k cache: the teacher's top-k classes, log-probabilities and tail (`indices`
  /// undefined otherwise). `logits` then holds a dense stand-in (see `CachedTeacher`), and the
  /// divergence objectives use these buckets instead (`sparse_divergence`).
  TopKTargets topk;
  /// From a `sampled` cache: the teacher's draws (`indices` undefined otherwise); `logits` then
  /// holds a stand-in whose argmax is the teacher's top-1 (see `CachedTeacher`).
  SampledTargets sampled;
};

/// A source of teacher logits for distillation.
///
/// The trainer asks for the logits of a batch by its inputs and by its samples' row indices in the
/// training set: a live teacher runs its model on the inputs, a cached teacher (offline
/// distillation) looks the indices up. A teacher is never changed by training.
class Teacher {
 public:
  virtual ~Teacher() = default;
  /// Logits `[B, C]` for a batch; `indices` (int64 `[B]`, CPU) are the rows of the training set.
  virtual torch::Tensor logits(const torch::Tensor& inputs, const torch::Tensor& indices) = 0;
  /// Logits, an ensemble's member logits and the named intermediate outputs `features` (taps, see
  /// `Model::forward_with_features`) of a batch, from one pass. The default gives the logits and
  /// throws `kdistill::Error` when any feature is asked for.
  virtual TeacherOutput outputs(const torch::Tensor& inputs, const torch::Tensor& indices,
                                const std::vector<std::string>& features = {});
  /// A short description for logs and reports.
  virtual std::string describe() const = 0;
  /// For a teacher that looks its logits up by sample index (a cache, or an ensemble with a cache
  /// among its members), how many samples it holds; -1 for one that runs on its inputs. The
  /// trainer refuses a training set of another size. This is the one property that says how a
  /// teacher finds its logits: composites forward it.
  virtual int64_t samples() const { return -1; }
  /// k for a teacher that keeps only its top-k classes (a `topk` cache), 0 for a dense one.
  virtual int64_t top_k() const { return 0; }
  /// Whether `logits` are the teacher's own for every class; false for a sparse (`topk` or
  /// `sampled`) cache, whose logits are a stand-in.
  virtual bool dense() const { return top_k() == 0; }
  /// For a teacher that reads its rows from disk in blocks (a streamed cache), the rows per block;
  /// 0 otherwise. The trainer then shuffles blocks of rows, and rows within windows of blocks
  /// (`data::BatchOptions::block_rows`), so that each block is read once per epoch.
  virtual int64_t block_rows() const { return 0; }
  /// The rows the trainer will ask for next, in order (this process's share of the rest of the
  /// epoch): a streamed cache reads ahead in that order. Asking for other rows stays allowed.
  virtual void plan(const torch::Tensor& order) {}
  /// Whether the teacher can score inputs outside its training set: `samples() < 0`. Evaluation-set
  /// accuracy and agreement are measured only for teachers that can.
  bool runs_on_inputs() const { return samples() < 0; }
  /// Trainable-size figure for reports: the model's parameter count, or -1 when there is no model.
  virtual int64_t num_parameters() const { return -1; }
  /// The feature names `outputs` accepts (empty for a teacher without taps).
  virtual std::vector<std::string> feature_names() const { return {}; }
  /// The precision the teacher computes in from now on; logits and features are always returned
  /// in float32. Teachers that compute nothing (a cache) ignore it.
  virtual void set_precision(Precision precision) {}
};

/// A frozen teacher over a trained `Model`: eval mode, `requires_grad` off on every parameter,
/// forward under `torch::NoGradGuard` on the model's own device (inputs are moved there and the
/// logits moved back to the inputs' device). `Model` copies share their module, so the caller's
/// handle to the same model is frozen too.
///
/// Example:
/// ```
/// auto teacher = std::make_shared<kdistill::ModelTeacher>(kdistill::Model(trained_mlp));
/// ```
class ModelTeacher : public Teacher {
 public:
  explicit ModelTeacher(Model model);
  torch::Tensor logits(const torch::Tensor& inputs, const torch::Tensor& indices) override;
  TeacherOutput outputs(const torch::Tensor& inputs, const torch::Tensor& indices,
                        const std::vector<std::string>& features = {}) override;
  std::string describe() const override;
  int64_t num_parameters() const override { return model_.num_parameters(); }
  std::vector<std::string> feature_names() const override { return model_.feature_names(); }
  /// bf16: the forward runs on `model().with_precision(bf16)` (a bfloat16 copy of the weights for
  /// TorchScript models and C++ `Sequential`s, bf16 autocast for other C++ modules). The wrapped
  /// model itself stays float32.
  void set_precision(Precision precision) override;
  /// The wrapped model (frozen, float32).
  Model& model() { return model_; }

 private:
  Model model_;
  Model compute_;  // what runs the forward when the precision is not float32
};

/// A teacher given as any function from inputs to logits (an ensemble in another library, a
/// rule-based scorer, ...). The function is called under `torch::NoGradGuard`.
///
/// Example:
/// ```
/// auto teacher = std::make_shared<kdistill::CallableTeacher>(
///     [](const torch::Tensor& x) { return x.flatten(1).matmul(w); }, "linear-rule");
/// ```
class CallableTeacher : public Teacher {
 public:
  CallableTeacher(std::function<torch::Tensor(const torch::Tensor&)> fn, std::string name = "callable");
  torch::Tensor logits(const torch::Tensor& inputs, const torch::Tensor& indices) override;
  std::string describe() const override { return name_; }
  /// bf16: the function runs under bf16 autocast; its output is cast to float32.
  void set_precision(Precision precision) override { precision_ = precision; }

 private:
  std::function<torch::Tensor(const torch::Tensor&)> fn_;
  std::string name_;
  Precision precision_ = Precision::kFloat32;
};

/// A weighted ensemble of teachers: live models, logit caches, or both.
///
/// `logits` gives the log of the weighted mean of the members' probabilities at T = 1:
///   logits = log sum_m w_m softmax(t_m),   w_m = weight_m / sum(weights)
/// (averaging probabilities, not raw logits, keeps members with different logit scales from
/// dominating). Distillation softens each member at its own temperature before averaging:
/// `outputs` also returns every member's logits and weight, and the objectives' soft targets are
///   p_T = sum_m w_m softmax(t_m / T)
/// (see `teacher_log_probs`), not the T = 1 average softened again.
///
/// With a cache among the members, the ensemble looks rows up by index: `samples()` is the
/// cache's row count (all cached members must agree) and `runs_on_inputs()` is false. Features are
/// not available from an ensemble.
///
/// Example:
/// ```
/// auto ens = std::make_shared<kdistill::EnsembleTeacher>(
///     std::vector<std::shared_ptr<kdistill::Teacher>>{live, cached}, std::vector<double>{2, 1});
/// ```
class EnsembleTeacher : public Teacher {
 public:
  /// `weights` (one per member, > 0) default to equal weights.
  explicit EnsembleTeacher(std::vector<std::shared_ptr<Teacher>> members, std::vector<double> weights = {});
  torch::Tensor logits(const torch::Tensor& inputs, const torch::Tensor& indices) override;
  TeacherOutput outputs(const torch::Tensor& inputs, const torch::Tensor& indices,
                        const std::vector<std::string>& features = {}) override;
  std::string describe() const override;
  int64_t samples() const override { return samples_; }
  /// The first streamed member's (the others are read whole or run on the inputs).
  int64_t block_rows() const override;
  /// Passed on to every member.
  void plan(const torch::Tensor& order) override;
  int64_t num_parameters() const override;
  /// Sets every member's precision.
  void set_precision(Precision precision) override;
  /// The normalised member weights.
  const std::vector<double>& weights() const { return weights_; }

 private:
  std::vector<std::shared_ptr<Teacher>> members_;
  std::vector<double> weights_;
  int64_t samples_ = -1;
};

}  // namespace kdistill
#pragma GCC visibility pop
