#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/arg.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include "kdistill/losses/divergence.h"
#include "kdistill/losses/dkd.h"
#include "kdistill/losses/kd_loss.h"
#include "kdistill/losses/schedule.h"
#include "kdistill/losses/sparse.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// Everything an objective sees at one training step.
struct StepContext {
  /// `[B, C]`, with gradient; bfloat16 when the student trains in bf16 (cast to float before any
  /// softmax, as the built-in objectives do).
  torch::Tensor student_logits;
  std::map<std::string, torch::Tensor> student_features;  ///< the student taps the objectives asked for
  torch::Tensor teacher_logits;                           ///< `[B, C]`; undefined without a teacher
  /// An ensemble's members' logits, `[B, C]` each, and their weights (summing to 1); empty for a
  /// single teacher. `teacher_log_probs` uses them to soften each member before averaging.
  std::vector<torch::Tensor> member_logits;
  std::vector<double> member_weights;
  std::map<std::string, torch::Tensor> teacher_features;  ///< the teacher taps the objectives asked for
  /// From a top-k cache: the teacher's top-k targets (`indices` undefined otherwise). Then
  /// `teacher_logits` is a dense stand-in, the divergence objectives (kd, soft_ce, the
  /// `DivergenceObjective` kinds) compare k + 1 buckets (`sparse_divergence`), and objectives
  /// that need every class (dkd, mse) refuse the step.
  TopKTargets teacher_topk;
  /// From a `sampled` cache: the teacher's draws (`indices` undefined otherwise). Then
  /// `teacher_logits` is a stand-in whose argmax is the teacher's top-1, kd, soft_ce and the
  /// `kl` divergence use the unbiased estimate (`sampled_kl`) at the temperature the draws were
  /// made at, and every other objective that needs the teacher's distribution refuses the step.
  SampledTargets teacher_sampled;
  torch::Tensor targets;         ///< int64 `[B]`; -1 marks a sample without a label
  /// float `[B]` per-sample weights (0 masks a sample); undefined: all 1. `DistillTrainer` leaves
  /// it undefined; drivers and objectives that wrap others set it.
  torch::Tensor sample_weights;
  bool all_labelled = false;     ///< no target is -1 (lets cross-entropy skip the masking)
  TrainProgress progress;
};

/// One named loss term. A step's loss is the sum of `weight * value` over its terms; the trainer
/// logs each term's `value` by `name` (per step in metrics.jsonl, and as an epoch mean).
struct LossTerm {
  std::string name;
  torch::Tensor value;  ///< a scalar
  double weight = 1.0;
};

/// The teacher's log-probabilities at temperature T, `[B, C]`, in float32 or wider (a top-k
/// teacher has no such thing: it throws `kdistill::Error`):
///   single teacher:  log softmax(t / T)
///   ensemble:        log sum_m w_m softmax(t_m / T)
/// i.e. each member softened at T first, then averaged with its weight (not averaged at T = 1 and
/// softened again). No gradient flows to the teacher. A cache made from an ensemble's `logits`
/// holds the T = 1 mixture, so distilling from it at T != 1 gives other targets than the live
/// ensemble.
torch::Tensor teacher_log_probs(const StepContext& ctx, double temperature);

/// A distillation objective: from one step's context to named loss terms.
///
/// An objective is a `torch::nn::Module`, so it may own parameters (a hint adapter): the trainer
/// moves them to its device, trains them with the student, saves them in checkpoints (exact resume
/// covers them) and leaves them out of the student it saves or exports. Intermediate outputs are
/// asked for by name (`student_features`, `teacher_features`) and arrive in the context.
///
/// Example (a user-defined objective, no library change needed):
/// ```
/// struct Confidence : kdistill::Objective {
///   std::vector<kdistill::LossTerm> terms(const kdistill::StepContext& c) override {
///     auto p = torch::softmax(c.student_logits, 1);
///     return {{"entropy", -(p * p.log()).sum(1).mean(), 0.1}};
///   }
///   bool needs_teacher() const override { return false; }
/// };
/// auto opts = kdistill::TrainerOptions().objective(std::make_shared<Confidence>());
/// ```
class Objective : public torch::nn::Module {
 public:
  /// The loss terms of one step.
  virtual std::vector<LossTerm> terms(const StepContext& ctx) = 0;
  /// Student submodules whose outputs this objective needs (see `Model::forward_with_features`).
  virtual std::vector<std::string> student_features() const { return {}; }
  /// Teacher submodules whose outputs this objective needs (a logit cache has none).
  virtual std::vector<std::string> teacher_features() const { return {}; }
  /// Whether the objective reads the teacher (a run with no teacher refuses one that does).
  virtual bool needs_teacher() const { return true; }
  /// Whether the objective reads the labels (a run with no labelled sample refuses one that does).
  virtual bool needs_labels() const { return false; }
};

/// The temperature of an objective that softens distributions: the constant from its options,
/// or a schedule set afterwards (annealing T over training). After `set_temperature` the
/// options' temperature is only the initial value; `temperature()` is the one in use.
///
/// Example:
/// ```
/// auto kd = std::make_shared<kdistill::KDObjective>(kdistill::KDLossOptions().alpha(1));
/// kd->set_temperature(kdistill::Schedule(kdistill::ScheduleOptions().kind("linear").start(8).end(2)));
/// ```
class Tempered {
 public:
  /// Throws `kdistill::Error` unless every value of `temperature` is > 0.
  void set_temperature(Schedule temperature);
  const Schedule& temperature() const { return temperature_; }

 protected:
  explicit Tempered(const char* who, double temperature);
  double temperature_at(const TrainProgress& progress) const { return temperature_.at(progress); }

 private:
  const char* who_;
  Schedule temperature_;
};

/// Hinton et al.'s KD as an objective: the terms of `kd_loss`, named `kd` (the T^2-scaled soft
/// KL, weight alpha) and `ce` (cross-entropy on the labelled samples, weight 1 - alpha). A term
/// whose weight is 0 is not computed. With an ensemble teacher the soft targets are
/// `teacher_log_probs` at T. With `sample_weights`, each per-sample loss is weighted and divided by
/// the weights' sum.
///
/// Example:
/// ```
/// auto kd = std::make_shared<kdistill::KDObjective>(kdistill::KDLossOptions().temperature(4).alpha(0.9));
/// ```
class KDObjective : public Objective, public Tempered {
 public:
  explicit KDObjective(KDLossOptions options = {});
  std::vector<LossTerm> terms(const StepContext& ctx) override;
  bool needs_teacher() const override { return options_.alpha() > 0; }
  /// False: without labels the `ce` term is 0 (as in `kd_loss`), and the soft term still teaches.
  bool needs_labels() const override { return false; }
  const KDLossOptions& options() const { return options_; }

 private:
  KDLossOptions options_;
};

/// Label cross-entropy over the labelled samples (`ce`): the from-labels baseline's loss.
class CrossEntropyObjective : public Objective {
 public:
  std::vector<LossTerm> terms(const StepContext& ctx) override;
  bool needs_teacher() const override { return false; }
  bool needs_labels() const override { return true; }
};

/// Soft-target cross-entropy at temperature T (`soft_ce`), T^2-scaled: KD's soft term plus the
/// teacher's entropy (a constant in the student). See `soft_target_cross_entropy`.
class SoftTargetCEObjective : public Objective, public Tempered {
 public:
  explicit SoftTargetCEObjective(double temperature = 1.0);
  std::vector<LossTerm> terms(const StepContext& ctx) override;
};

/// Mean squared error between student and teacher logits (`mse`, Ba & Caruana 2014).
class LogitMSEObjective : public Objective {
 public:
  std::vector<LossTerm> terms(const StepContext& ctx) override;
};

/// Options for `HintObjective`.
struct HintOptions {
  HintOptions(std::string student_feature, std::string teacher_feature)
      : student_feature_(std::move(student_feature)), teacher_feature_(std::move(teacher_feature)) {}
  /// The student tap (see `Model::forward_with_features`).
  TORCH_ARG(std::string, student_feature);
  /// The teacher tap whose output the adapted student feature must match.
  TORCH_ARG(std::string, teacher_feature);
  /// Channels (conv features `[B, C, H, W]`) or width (`[B, F]`) of the student feature.
  TORCH_ARG(int64_t, student_channels) = 0;
  /// Channels or width of the teacher feature.
  TORCH_ARG(int64_t, teacher_channels) = 0;
  /// "conv1x1" (features `[B, C, H, W]`) or "linear" (features `[B, F]`, or flattened).
  TORCH_ARG(std::string, adapter) = "conv1x1";
};

/// FitNets hints (Romero et al. 2015): a learned adapter maps a student feature to a teacher
/// feature's shape, and the term `hint` is the mean squared error between them:
///   hint = mean( (adapter(f_s) - f_t)^2 )
/// The adapter (a 1x1 convolution or a linear layer, with bias) is this objective's parameter:
/// trained with the student, checkpointed, never part of the saved student. Spatial sizes must
/// match (choose the layers so they do).
///
/// Example:
/// ```
/// auto hint = std::make_shared<kdistill::HintObjective>(
///     kdistill::HintOptions("features.3", "features.6").student_channels(16).teacher_channels(64));
/// ```
class HintObjective : public Objective {
 public:
  explicit HintObjective(HintOptions options);
  std::vector<LossTerm> terms(const StepContext& ctx) override;
  std::vector<std::string> student_features() const override { return {options_.student_feature()}; }
  std::vector<std::string> teacher_features() const override { return {options_.teacher_feature()}; }

 private:
  HintOptions options_;
  torch::nn::Conv2d conv_{nullptr};
  torch::nn::Linear linear_{nullptr};
};

/// One of `divergence`'s divergences between the teacher's and the student's softened
/// distributions, as an objective: the term is named by the kind (`kl`, `reverse_kl`, `jsd`,
/// `tvd`, `skew_kl`, `skew_reverse_kl`), T^2-scaled, averaged over the samples (weighted by
/// `sample_weights` when the step has them). An ensemble's targets are `teacher_log_probs` at T.
///
/// Example (GKD's generalized JSD with beta 0.9):
/// ```
/// auto jsd = std::make_shared<kdistill::DivergenceObjective>(kdistill::DivergenceOptions().kind("jsd").beta(0.9));
/// ```
class DivergenceObjective : public Objective, public Tempered {
 public:
  explicit DivergenceObjective(DivergenceOptions options = {});
  std::vector<LossTerm> terms(const StepContext& ctx) override;
  const DivergenceOptions& options() const { return options_; }

 private:
  DivergenceOptions options_;
};

/// Decoupled KD (`dkd_loss`) as an objective: terms `tckd` (weight alpha) and `nckd` (weight
/// beta), each T^2-scaled. An unlabelled sample's target class is the teacher's top class. Add
/// cross-entropy and a warm-up of the DKD weight to get mdistiller's recipe:
///
/// Example (mdistiller's recipe: alpha 1, beta 8, T 4, CE weight 1, the DKD weight warmed up over
/// 20 epochs; mdistiller steps the warm-up once per epoch, this schedule every step):
/// ```
/// auto loss = std::make_shared<kdistill::CompositeObjective>();
/// loss->add("dkd", std::make_shared<kdistill::DKDObjective>(),
///           kdistill::Schedule(kdistill::ScheduleOptions().kind("linear").start(0).end(1).span_epochs(20)));
/// loss->add("ce", std::make_shared<kdistill::CrossEntropyObjective>());
/// ```
class DKDObjective : public Objective, public Tempered {
 public:
  explicit DKDObjective(DKDLossOptions options = {});
  std::vector<LossTerm> terms(const StepContext& ctx) override;
  const DKDLossOptions& options() const { return options_; }

 private:
  DKDLossOptions options_;
};

/// Options for `AttentionTransferObjective`.
struct AttentionTransferOptions {
  /// Layer pairs: (student tap, teacher tap), each a `[B, C, H, W]` feature.
  using Pairs = std::vector<std::pair<std::string, std::string>>;
  explicit AttentionTransferOptions(Pairs pairs) : pairs_(std::move(pairs)) {}
  TORCH_ARG(Pairs, pairs);
  /// The exponent of the attention map.
  TORCH_ARG(double, p) = 2.0;
};

/// Attention transfer (Zagoruyko and Komodakis, ICLR 2017): the term `at` is the sum over layer
/// pairs of `attention_transfer` (the squared distance of L2-normalised spatial attention maps,
/// p = 2), averaged over the samples. No parameters; channel counts may differ, and a larger
/// spatial size is pooled to the smaller. mdistiller weights it by 1000.
///
/// Example:
/// ```
/// auto at = std::make_shared<kdistill::AttentionTransferObjective>(
///     kdistill::AttentionTransferOptions({{"features.2", "features.2"}, {"features.6", "features.6"}}));
/// ```
class AttentionTransferObjective : public Objective {
 public:
  explicit AttentionTransferObjective(AttentionTransferOptions options);
  std::vector<LossTerm> terms(const StepContext& ctx) override;
  std::vector<std::string> student_features() const override;
  std::vector<std::string> teacher_features() const override;

 private:
  AttentionTransferOptions options_;
};

/// Objectives combined with weights: the terms of each entry, each term's weight multiplied by the
/// entry's weight (a constant or a `Schedule`, evaluated at each step). A term is named by its entry's name when the entry gives one term, and
/// `entry.term` when it gives several. Entries are registered submodules (their parameters are
/// the composite's).
///
/// Example:
/// ```
/// auto loss = std::make_shared<kdistill::CompositeObjective>();
/// loss->add("kd", std::make_shared<kdistill::KDObjective>(kdistill::KDLossOptions().alpha(1)), 0.9);
/// loss->add("ce", std::make_shared<kdistill::CrossEntropyObjective>(), 0.1);
/// ```
class CompositeObjective : public Objective {
 public:
  /// Adds an entry; `name` must be unique and non-empty and hold no '.'.
  CompositeObjective& add(const std::string& name, std::shared_ptr<Objective> objective, Schedule weight = 1.0);
  std::vector<LossTerm> terms(const StepContext& ctx) override;
  std::vector<std::string> student_features() const override;
  std::vector<std::string> teacher_features() const override;
  bool needs_teacher() const override;
  bool needs_labels() const override;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string name;
    std::shared_ptr<Objective> objective;
    Schedule weight;
    bool off() const { return weight.is_constant() && weight.initial() == 0; }
  };
  std::vector<Entry> entries_;
};

}  // namespace kdistill
#pragma GCC visibility pop
