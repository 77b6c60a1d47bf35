#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "kdistill/models/model.h"

namespace kdistill {

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
  /// A short description for logs and reports.
  virtual std::string describe() const = 0;
  /// Whether the teacher can score inputs outside its training set (a live model can; a logit
  /// cache cannot). Evaluation-set agreement is measured only for teachers that can.
  virtual bool runs_on_inputs() const { return true; }
  /// For a teacher that looks its logits up by sample index (a cache), how many samples it holds;
  /// -1 for one that runs on its inputs. The trainer refuses a training set of another size.
  virtual int64_t samples() const { return -1; }
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
  std::string describe() const override;
  /// The wrapped model (frozen).
  Model& model() { return model_; }

 private:
  Model model_;
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

 private:
  std::function<torch::Tensor(const torch::Tensor&)> fn_;
  std::string name_;
};

/// An ensemble: the log of the mean of the members' softmax probabilities, i.e. logits whose
/// softmax is the averaged prediction (averaging probabilities, not raw logits, keeps members with
/// different logit scales from dominating).
class EnsembleTeacher : public Teacher {
 public:
  explicit EnsembleTeacher(std::vector<std::shared_ptr<Teacher>> members);
  torch::Tensor logits(const torch::Tensor& inputs, const torch::Tensor& indices) override;
  std::string describe() const override;

 private:
  std::vector<std::shared_ptr<Teacher>> members_;
};

}  // namespace kdistill
