#include "train/preflight.h"

#include <torch/torch.h>

#include <cmath>
#include <set>

#include "core/finite.h"
#include "kdistill/core/error.h"
#include "kdistill/losses/tokens.h"

namespace kdistill::detail {
namespace {

constexpr const char* kFit = "DistillTrainer::fit";

// Logits of `rows` samples: [rows, C], or [rows, L, V] for per-position targets [N, L].
bool logits_fit(const torch::Tensor& logits, const data::TensorDataset& train, int64_t rows) {
  if (!train.is_sequence()) return logits.dim() == 2 && logits.size(0) == rows && logits.size(1) == train.num_classes();
  return logits.dim() == 3 && logits.size(0) == rows && logits.size(1) == train.targets().size(1) &&
         logits.size(2) == train.num_classes();
}

std::string expected_shape(const data::TensorDataset& train, int64_t rows) {
  const auto n = [](int64_t v) { return std::to_string(v); };
  return train.is_sequence() ? "[" + n(rows) + ", " + n(train.targets().size(1)) + ", " + n(train.num_classes()) + "]"
                             : "[" + n(rows) + ", " + n(train.num_classes()) + "]";
}

std::string probe(Model& student, Teacher* teacher, Objective& objective, const data::TensorDataset& train,
                  const torch::Device& device,
                  int64_t steps_per_epoch) {
  torch::NoGradGuard no_grad;
  const int64_t classes = train.num_classes();
  const int64_t rows = std::min<int64_t>(2, train.size());
  auto x = train.features().narrow(0, 0, rows).to(device);
  StepContext ctx;
  {
    TrainingModeGuard<Model> eval(student, false);
    ForwardOutput out;
    try {
      out = student.forward_with_features(x, objective.student_features());
    } catch (const c10::Error& e) {
      fail(kFit, ": the student cannot take inputs of shape ", x.sizes(), ": ", first_line(e.what_without_backtrace()));
    }
    check(logits_fit(out.logits, train, rows), kFit, ": the student returns shape ", out.logits.sizes(), " for inputs ",
          x.sizes(), "; expected ", expected_shape(train, rows), " (", classes,
          train.is_sequence() ? " tokens in the vocabulary of '" : " classes in '", train.name(), "')");
    ctx.student_logits = out.logits;
    ctx.student_features = std::move(out.features);
  }
  if (teacher) {
    TeacherOutput t;
    try {
      t = teacher->outputs(x, torch::arange(rows, torch::kLong), objective.teacher_features());
    } catch (const c10::Error& e) {
      fail(kFit, ": the teacher cannot take inputs of shape ", x.sizes(), ": ", first_line(e.what_without_backtrace()));
    }
    check(logits_fit(t.logits, train, rows), kFit, ": the teacher returns shape ", t.logits.sizes(), " for inputs ",
          x.sizes(), "; expected ", expected_shape(train, rows));
    ctx.teacher_logits = t.logits;
    ctx.member_logits = std::move(t.member_logits);
    ctx.member_weights = std::move(t.member_weights);
    ctx.teacher_features = std::move(t.features);
    ctx.teacher_topk = std::move(t.topk);
    ctx.teacher_sampled = std::move(t.sampled);
  }
  ctx.targets = train.targets().narrow(0, 0, rows).to(device);
  ctx.all_labelled = train.num_labelled() == train.size();
  ctx.progress = TrainProgress{0, 0, 0, steps_per_epoch};  // schedules with a span in epochs need it
  std::vector<LossTerm> terms;
  {
    // In eval mode, like the models: the probe must not move an objective's state (batch-norm
    // statistics in an adapter), or a resumed run would differ from an uninterrupted one.
    TrainingModeGuard<Objective> eval(objective, false);
    try {
      terms = objective.terms(token_context(ctx));
    } catch (const c10::Error& e) {
      fail(kFit, ": the objective fails on a probe batch: ", first_line(e.what_without_backtrace()));
    }
  }
  check(!terms.empty(), kFit, ": the objective gives no loss term");
  std::set<std::string> names;
  for (const auto& term : terms) {
    check(!term.name.empty(), kFit, ": the objective gives a loss term without a name");
    check(names.insert(term.name).second, kFit, ": the objective gives two loss terms named '", term.name, "'");
    check(term.value.defined() && term.value.numel() == 1, kFit, ": loss term '", term.name,
          "' is not a scalar (shape ", term.value.defined() ? term.value.sizes() : torch::IntArrayRef{}, ")");
    check(std::isfinite(term.weight), kFit, ": loss term '", term.name, "' has weight ", term.weight);
  }
  std::string joined;
  for (const auto& term : terms) joined += (joined.empty() ? "" : ",") + term.name;
  return joined;
}

}  // namespace


void validate_options(const TrainerOptions& o) {
  constexpr const char* fn = "TrainerOptions";
  const std::set<std::string> optimizers = {"sgd", "adam", "adamw"};
  const std::set<std::string> schedules = {"constant", "step", "cosine"};
  check(o.epochs() >= 0, fn, ": epochs must be >= 0, got ", o.epochs());
  check(o.max_steps() >= 0, fn, ": max_steps must be >= 0, got ", o.max_steps());
  check(o.batch_size() >= 1, fn, ": batch_size must be >= 1, got ", o.batch_size());
  check(o.micro_batches() >= 1 && o.micro_batches() <= o.batch_size(), fn, ": micro_batches must be in [1, batch_size = ",
        o.batch_size(), "], got ", o.micro_batches());
  check(optimizers.count(o.optimizer()) == 1, fn, ": optimizer must be sgd, adam or adamw, got \"", o.optimizer(), "\"");
  check(o.lr() > 0 && std::isfinite(o.lr()), fn, ": lr must be > 0, got ", o.lr());
  check(o.momentum() >= 0 && o.momentum() < 1, fn, ": momentum must be in [0, 1), got ", o.momentum());
  check(!o.nesterov() || o.momentum() > 0, fn, ": nesterov needs momentum > 0");
  check(o.weight_decay() >= 0 && std::isfinite(o.weight_decay()), fn, ": weight_decay must be >= 0, got ",
        o.weight_decay());
  check(schedules.count(o.schedule()) == 1, fn, ": schedule must be constant, step or cosine, got \"", o.schedule(), "\"");
  check(o.warmup_steps() >= 0, fn, ": warmup_steps must be >= 0, got ", o.warmup_steps());
  check(o.step_size() >= 0, fn, ": step_size must be >= 0, got ", o.step_size());
  check(o.gamma() > 0, fn, ": gamma must be > 0, got ", o.gamma());
  check(o.grad_clip_norm() >= 0, fn, ": grad_clip_norm must be >= 0, got ", o.grad_clip_norm());
  check(o.checkpoint_every() >= 0, fn, ": checkpoint_every must be >= 0, got ", o.checkpoint_every());
  check(o.checkpoint_every() == 0 || !o.output_dir().empty(), fn, ": checkpoint_every needs an output_dir");
  check(o.log_every() >= 0, fn, ": log_every must be >= 0, got ", o.log_every());
  check(o.eval_batch_size() >= 1, fn, ": eval_batch_size must be >= 1, got ", o.eval_batch_size());
  check(o.on_nonfinite() == "stop" || o.on_nonfinite() == "skip", fn, ": on_nonfinite must be stop or skip, got \"",
        o.on_nonfinite(), "\"");
  const auto& l = o.loss();
  check(l.temperature() > 0 && std::isfinite(l.temperature()), fn, ": loss temperature must be > 0, got ",
        l.temperature());
  check(l.alpha() >= 0 && l.alpha() <= 1, fn, ": loss alpha must be in [0, 1], got ", l.alpha());
  check(l.ignore_index() == -1, fn, ": loss ignore_index must be -1 (the data sets' mark for no label), got ",
        l.ignore_index());
}

std::string preflight(Model& student, Teacher* teacher, Objective& objective, const data::TensorDataset& train,
               const data::TensorDataset* eval, int64_t batch_size, const torch::Device& device) {
  const int64_t n = train.size();
  check(n > 0, kFit, ": the training set '", train.name(), "' is empty");
  check(batch_size <= n, kFit, ": batch_size ", batch_size, " is larger than the training set (", n, " samples)");
  const bool labels = train.num_labelled() > 0;
  check(teacher || labels, kFit, ": no teacher and no labelled sample in '", train.name(), "': nothing to learn from");
  check(teacher || !objective.needs_teacher(), kFit, ": the objective needs a teacher and the run has none");
  check(labels || !objective.needs_labels(), kFit, ": the objective needs labels and '", train.name(),
        "' has no labelled sample");
  if (teacher && teacher->samples() >= 0) {
    // Rows are looked up by sample index: any other count would misalign or fail mid-epoch.
    check(teacher->samples() == n, kFit, ": the teacher ", teacher->describe(), " holds logits for ",
          teacher->samples(), " samples but the training set '", train.name(), "' has ", n);
  }
  if (auto row = first_nonfinite_row(train.features().flatten(1)); row >= 0) {
    fail(kFit, ": training set '", train.name(), "' has a NaN or infinite feature in sample ", row);
  }
  if (eval) {
    check(eval->size() > 0, kFit, ": the evaluation set '", eval->name(), "' is empty");
    check(eval->sample_shape() == train.sample_shape(), kFit, ": evaluation samples are ",
          torch::IntArrayRef(eval->sample_shape()), " but training samples are ", torch::IntArrayRef(train.sample_shape()));
    check(eval->num_classes() <= train.num_classes(), kFit, ": the evaluation set has ", eval->num_classes(),
          " classes, the training set ", train.num_classes());
  }
  return probe(student, teacher, objective, train, device, (n + batch_size - 1) / batch_size);
}

}  // namespace kdistill::detail
