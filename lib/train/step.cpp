#include "train/step.h"

#include <torch/torch.h>

#include <cmath>

#include "kdistill/core/error.h"

namespace kdistill::detail {

TrainStep::TrainStep(Model& student, Teacher* teacher, Objective& objective, std::vector<torch::Tensor> params,
                     Precision student_precision, torch::Device device)
    : student_(student),
      teacher_(teacher),
      objective_(objective),
      params_(std::move(params)),
      student_features_(objective.student_features()),
      teacher_features_(objective.teacher_features()),
      precision_(student_precision),
      device_(device) {}

void TrainStep::set_accumulation(int64_t k, TokenReduction reduction) {
  check(k >= 1, "training: micro_batches must be >= 1, got ", k);
  micro_batches_ = k;
  reduction_ = reduction;
}

std::vector<LossTerm> TrainStep::terms_of(const data::Batch& b, const TrainProgress& progress, bool all_labelled,
                                          torch::Tensor& loss) {
  StepContext ctx;
  {
    // The objectives run outside the region: losses and softmaxes in float32 (they promote).
    AutocastGuard autocast(device_, precision_);
    auto out = student_.forward_with_features(b.inputs, student_features_);
    ctx.student_logits = std::move(out.logits);
    ctx.student_features = std::move(out.features);
  }
  if (teacher_ && (objective_.needs_teacher() || !teacher_features_.empty())) {
    auto t = teacher_->outputs(b.inputs, b.indices, teacher_features_);
    ctx.teacher_logits = std::move(t.logits);
    ctx.member_logits = std::move(t.member_logits);
    ctx.member_weights = std::move(t.member_weights);
    ctx.teacher_features = std::move(t.features);
    ctx.teacher_topk = std::move(t.topk);
    ctx.teacher_sampled = std::move(t.sampled);
  }
  ctx.targets = b.targets;
  ctx.all_labelled = all_labelled;
  ctx.progress = progress;

  // Sequences: one row per counted token, so that every objective averages over real tokens.
  // Per-sample batches go as they are: no copy of the context on the per-step path.
  auto terms = ctx.student_logits.dim() == 3 ? objective_.terms(token_context(ctx)) : objective_.terms(ctx);
  check(!terms.empty(), "training: the objective gave no loss term at step ", progress.step + 1);
  loss = torch::Tensor();
  if (terms.size() == 1 && terms[0].weight == 1.0) {
    loss = terms[0].value;
  } else {
    for (const auto& t : terms) {
      auto weighted = t.weight == 1.0 ? t.value : t.weight * t.value;
      loss = loss.defined() ? loss + weighted : weighted;
    }
  }
  return terms;
}

double TrainStep::denominator(const torch::Tensor& targets) const {
  if (targets.dim() != 2) return static_cast<double>(targets.size(0));
  if (reduction_ == TokenReduction::kSequenceSum) return static_cast<double>(targets.size(0));
  return static_cast<double>(targets.ge(0).sum().item<int64_t>());
}

StepOutcome TrainStep::compute(const data::Batch& b, const TrainProgress& progress, bool all_labelled,
                               double denominator_arg) {
  // Zero the gradient buffers in place rather than dropping them: fresh buffers every step
  // cost page faults, measured at ~0.5 ms per MLP-64 step on these machines (fit ran at half
  // the speed of a bare LibTorch loop). Written out because zero_grad() drops them in 2.x.
  for (auto& p : params_) {
    if (p.grad().defined()) {
      p.mutable_grad().detach_();
      p.mutable_grad().zero_();
    }
  }
  const int64_t rows = b.inputs.size(0);
  const int64_t k = std::min(micro_batches_, rows);
  const bool sequence = b.targets.dim() == 2;
  // What each micro-batch's loss is divided by: see compute()'s comment in step.h.
  auto count = [&](const torch::Tensor& targets) -> double {
    return sequence ? static_cast<double>(targets.ge(0).sum().item<int64_t>()) : static_cast<double>(targets.size(0));
  };
  const double counted = count(b.targets);  // the batch's rows, or its real tokens
  const double denominator = denominator_arg > 0 ? denominator_arg
                             : sequence && reduction_ == TokenReduction::kSequenceSum ? static_cast<double>(rows)
                                                                                      : counted;
  // The micro-batches, and what each counts; the last one that counts runs the backward hook.
  std::vector<data::Batch> parts;
  std::vector<double> counts;
  int64_t last = -1;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t begin = i * rows / k, end = (i + 1) * rows / k;
    parts.push_back(k == 1 ? b
                           : data::Batch{b.inputs.narrow(0, begin, end - begin), b.targets.narrow(0, begin, end - begin),
                                         b.indices.defined() ? b.indices.narrow(0, begin, end - begin) : b.indices});
    counts.push_back(k == 1 ? counted : count(parts.back().targets));
    if (counts.back() > 0) last = i;
  }
  StepOutcome r;
  for (int64_t i = 0; i < k; ++i) {
    const auto& part = parts[static_cast<size_t>(i)];
    const double n = counts[static_cast<size_t>(i)];
    if (n == 0) continue;  // nothing counts here (all padding): no term, no gradient
    torch::Tensor loss;
    auto terms = terms_of(part, progress, all_labelled, loss);
    const double share = n / denominator;
    if (i == last && before_last_backward_) before_last_backward_();
    (share == 1.0 ? loss : loss * share).backward();
    const double value = loss.item<double>();
    r.loss += share * value;
    for (size_t j = 0; j < terms.size(); ++j) {
      // One term of weight 1 is the loss itself: no second read.
      const double v = terms.size() == 1 && terms[j].weight == 1.0 ? value : terms[j].value.item<double>();
      if (r.terms.size() <= j) r.terms.emplace_back(terms[j].name, 0.0);
      r.terms[j].second += share * v;
    }
  }
  r.finite = std::isfinite(r.loss);
  return r;
}

void TrainStep::apply(torch::optim::Optimizer& optimizer, double clip_norm) {
  if (clip_norm > 0) torch::nn::utils::clip_grad_norm_(params_, clip_norm);
  optimizer.step();
}

}  // namespace kdistill::detail
