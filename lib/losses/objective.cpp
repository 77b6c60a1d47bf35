#include "kdistill/losses/objective.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/losses/attention.h"
#include "losses/kd_loss_impl.h"

namespace kdistill {
namespace {

// Per-sample values reduced to one number: the plain mean, or the weighted mean when the step
// carries sample weights (`mask` further restricts which samples count, e.g. the labelled ones).
torch::Tensor reduce(const torch::Tensor& per_sample, const StepContext& c, const torch::Tensor& mask = {}) {
  auto w = c.sample_weights.defined() ? c.sample_weights.to(per_sample.scalar_type()) : torch::Tensor();
  if (mask.defined()) w = w.defined() ? w * mask.to(w.scalar_type()) : mask.to(per_sample.scalar_type());
  if (!w.defined()) return per_sample.mean();
  return (per_sample * w).sum() / w.sum().clamp_min(1e-12);
}

const torch::Tensor& need_teacher(const StepContext& c, const char* who) {
  check(c.teacher_logits.defined(), who, ": this objective needs a teacher, and the step has none");
  return c.teacher_logits;
}

// A sampled teacher serves only the objectives linear in its distribution (kd, soft_ce, kl).
void refuse_sampled(const StepContext& c, const char* who) {
  check(!c.teacher_sampled.indices.defined(), who, ": this objective needs the teacher's whole distribution; a sampled "
        "cache holds ", c.teacher_sampled.indices.defined() ? c.teacher_sampled.indices.size(-1) : 0,
        " draws per position, which estimate only kd, soft_ce and the kl divergence (use a dense or top-k cache)");
}

// Objectives that compare every class refuse a top-k teacher rather than use its stand-in logits.
void need_dense_teacher(const StepContext& c, const char* who) {
  check(!c.teacher_topk.indices.defined(), who, ": this objective needs the teacher's logits for every class; a top-k "
        "cache keeps ", c.teacher_topk.indices.defined() ? c.teacher_topk.indices.size(-1) : 0, " (use a dense cache "
        "or a live teacher)");
  refuse_sampled(c, who);
}

// The sampled targets, after checking that the objective's temperature now is theirs.
const SampledTargets& sampled_at(const StepContext& c, double t, const char* who) {
  const double drawn = c.teacher_sampled.temperature;
  check(std::abs(drawn - t) <= 1e-9 * t, who, ": the sampled cache was drawn at T = ", drawn,
        " but the objective's temperature is ", t, " at step ", c.progress.step + 1,
        "; draws estimate the distribution at their own temperature only (kdistill cache-teacher --temperature)");
  return c.teacher_sampled;
}

// The student's log-probabilities at T, and the teacher's (`teacher_log_probs`); for a top-k
// teacher, both over its k + 1 buckets (`sparse_divergence`).
std::pair<torch::Tensor, torch::Tensor> softened(const StepContext& c, double t) {
  if (c.teacher_topk.indices.defined()) return detail::bucket_log_probs(c.student_logits, c.teacher_topk, t);
  return {torch::log_softmax(detail::promote(c.student_logits) / t, 1), teacher_log_probs(c, t)};
}

// T^2 * KL(teacher || student) at temperature T, per the objective's reduction.
torch::Tensor soft_term(const StepContext& c, double temperature) {
  need_teacher(c, "kd");
  if (c.teacher_sampled.indices.defined()) {
    return reduce(sampled_kl(c.student_logits, sampled_at(c, temperature, "kd")), c);
  }
  if (c.member_logits.empty() && !c.sample_weights.defined() && !c.teacher_topk.indices.defined()) {
    return detail::soft_kl(c.student_logits, c.teacher_logits, temperature);  // the fused hot path
  }
  auto [log_ps, log_pt] = softened(c, temperature);
  auto kl = detail::kl_from_log(log_pt, log_ps);
  return reduce(kl, c) * (temperature * temperature);
}

torch::Tensor label_term(const StepContext& c) {
  if (!c.sample_weights.defined()) {
    return c.all_labelled ? detail::plain_ce(c.student_logits, c.targets) : detail::hard_ce(c.student_logits, c.targets, -1);
  }
  auto y = c.targets.to(torch::kLong);
  auto labelled = y != -1;
  auto nll = torch::nll_loss(torch::log_softmax(detail::promote(c.student_logits), 1), y.clamp_min(0), {},
                             at::Reduction::None);
  return reduce(nll * labelled.to(nll.scalar_type()), c, labelled);
}

}  // namespace

torch::Tensor teacher_log_probs(const StepContext& c, double temperature) {
  need_teacher(c, "teacher_log_probs");
  check(!c.teacher_topk.indices.defined(), "teacher_log_probs: the teacher is a top-k cache: its distribution has k + "
        "1 buckets, not every class (see sparse_divergence)");
  check(!c.teacher_sampled.indices.defined(), "teacher_log_probs: the teacher is a sampled cache: it holds draws from "
        "its distribution, not the distribution (see sampled_kl)");
  if (c.member_logits.empty()) return torch::log_softmax(detail::promote(c.teacher_logits.detach()) / temperature, 1);
  check(c.member_weights.size() == c.member_logits.size(), "teacher_log_probs: ", c.member_logits.size(),
        " member logits but ", c.member_weights.size(), " weights");
  std::vector<torch::Tensor> parts;
  for (size_t m = 0; m < c.member_logits.size(); ++m) {
    auto l = detail::promote(c.member_logits[m].detach());
    parts.push_back(torch::log_softmax(l / temperature, 1) + std::log(c.member_weights[m]));
  }
  return torch::logsumexp(torch::stack(parts), 0);
}

Tempered::Tempered(const char* who, double temperature) : who_(who), temperature_(temperature) {
  check(temperature > 0 && std::isfinite(temperature), who_, ": temperature must be > 0, got ", temperature);
}

void Tempered::set_temperature(Schedule temperature) {
  check(temperature.positive(), who_, ": a temperature must stay > 0, got ", temperature.describe());
  temperature_ = std::move(temperature);
}

KDObjective::KDObjective(KDLossOptions options)
    : Tempered("KDObjective", options.temperature()), options_(std::move(options)) {
  check(options_.alpha() >= 0 && options_.alpha() <= 1, "KDObjective: alpha must be in [0, 1], got ", options_.alpha());
  check(options_.ignore_index() == -1, "KDObjective: ignore_index must be -1 (the data sets' mark for no label), got ",
        options_.ignore_index());
}

std::vector<LossTerm> KDObjective::terms(const StepContext& c) {
  std::vector<LossTerm> out;
  const double alpha = options_.alpha();
  if (alpha > 0) out.push_back({"kd", soft_term(c, temperature_at(c.progress)), alpha});
  if (alpha < 1) out.push_back({"ce", label_term(c), 1.0 - alpha});
  return out;
}

std::vector<LossTerm> CrossEntropyObjective::terms(const StepContext& c) { return {{"ce", label_term(c), 1.0}}; }

SoftTargetCEObjective::SoftTargetCEObjective(double temperature) : Tempered("SoftTargetCEObjective", temperature) {}

std::vector<LossTerm> SoftTargetCEObjective::terms(const StepContext& c) {
  const double t = temperature_at(c.progress);
  if (c.teacher_sampled.indices.defined()) {
    const auto& targets = sampled_at(c, t, "soft_ce");
    auto log_q = detail::sampled_log_q(c.student_logits, targets);
    auto ce = -(targets.weights.to(log_q.device(), log_q.scalar_type()) * log_q).sum(-1);
    return {{"soft_ce", reduce(ce, c) * (t * t), 1.0}};
  }
  auto [log_ps, log_pt] = softened(c, t);
  auto ce = -(log_pt.exp() * log_ps).sum(1);
  return {{"soft_ce", reduce(ce, c) * (t * t), 1.0}};
}

DivergenceObjective::DivergenceObjective(DivergenceOptions options)
    : Tempered("DivergenceObjective", options.temperature()), options_(std::move(options)) {
  detail::check_divergence_options("DivergenceObjective", options_);
}

std::vector<LossTerm> DivergenceObjective::terms(const StepContext& c) {
  const double t = temperature_at(c.progress);
  if (options_.kind() == "kl" && c.teacher_sampled.indices.defined()) {
    return {{options_.kind(), reduce(sampled_kl(c.student_logits, sampled_at(c, t, "kl")), c), 1.0}};
  }
  refuse_sampled(c, options_.kind().c_str());
  auto [log_q, log_p] = softened(c, t);
  auto d = detail::divergence_from_log_probs(log_q, log_p, options_);
  return {{options_.kind(), reduce(d, c) * (t * t), 1.0}};
}

DKDObjective::DKDObjective(DKDLossOptions options)
    : Tempered("DKDObjective", options.temperature()), options_(std::move(options)) {
  check(options_.alpha() >= 0 && std::isfinite(options_.alpha()), "DKDObjective: alpha must be >= 0, got ",
        options_.alpha());
  check(options_.beta() >= 0 && std::isfinite(options_.beta()), "DKDObjective: beta must be >= 0, got ",
        options_.beta());
  check(options_.ignore_index() == -1, "DKDObjective: ignore_index must be -1 (the data sets' mark for no label), got ",
        options_.ignore_index());
}

std::vector<LossTerm> DKDObjective::terms(const StepContext& c) {
  need_dense_teacher(c, "dkd");
  const double t = temperature_at(c.progress);
  auto [log_q, log_p] = softened(c, t);
  auto y = c.targets.to(torch::kLong);
  if (!c.all_labelled) y = torch::where(y == -1, log_p.argmax(1), y);
  auto [tckd, nckd] = detail::dkd_parts(log_q, log_p, y);
  return {{"tckd", reduce(tckd, c) * (t * t), options_.alpha()}, {"nckd", reduce(nckd, c) * (t * t), options_.beta()}};
}

AttentionTransferObjective::AttentionTransferObjective(AttentionTransferOptions options)
    : options_(std::move(options)) {
  check(!options_.pairs().empty(), "AttentionTransferObjective: pairs is empty (give one (student, teacher) tap pair or more)");
  for (const auto& [s, t] : options_.pairs()) {
    check(!s.empty() && !t.empty(), "AttentionTransferObjective: a pair names an empty tap");
  }
  check(options_.p() >= 1 && std::isfinite(options_.p()), "AttentionTransferObjective: p must be >= 1, got ", options_.p());
}

std::vector<LossTerm> AttentionTransferObjective::terms(const StepContext& c) {
  torch::Tensor sum;
  for (const auto& [s, t] : options_.pairs()) {
    check(c.student_features.count(s) == 1 && c.teacher_features.count(t) == 1,
          "at: the step holds no student feature '", s, "' or teacher feature '", t, "'");
    const auto& fs = c.student_features.at(s);
    const auto& ft = c.teacher_features.at(t);
    check(fs.dim() == 4 && ft.dim() == 4, "at: attention transfer needs [B, C, H, W] features; student '", s, "' is ",
          fs.sizes(), ", teacher '", t, "' is ", ft.sizes());
    auto per_sample = attention_transfer(fs, ft, options_.p());
    sum = sum.defined() ? sum + per_sample : per_sample;
  }
  return {{"at", reduce(sum, c), 1.0}};
}

namespace {
// The distinct first (student) or second (teacher) names of the pairs, in order.
std::vector<std::string> side(const AttentionTransferOptions::Pairs& pairs, bool student) {
  std::vector<std::string> out;
  for (const auto& pair : pairs) {
    const auto& name = student ? pair.first : pair.second;
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  return out;
}
}  // namespace

std::vector<std::string> AttentionTransferObjective::student_features() const { return side(options_.pairs(), true); }

std::vector<std::string> AttentionTransferObjective::teacher_features() const { return side(options_.pairs(), false); }

std::vector<LossTerm> LogitMSEObjective::terms(const StepContext& c) {
  const auto& t = need_teacher(c, "mse");
  need_dense_teacher(c, "mse");
  auto diff = detail::promote(c.student_logits) - detail::promote(t.detach());
  return {{"mse", reduce(diff.pow(2).mean(1), c), 1.0}};
}

HintObjective::HintObjective(HintOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  check(!o.student_feature().empty() && !o.teacher_feature().empty(),
        "HintObjective: student_feature and teacher_feature must name taps");
  check(o.student_channels() > 0 && o.teacher_channels() > 0,
        "HintObjective: student_channels and teacher_channels must be > 0, got ", o.student_channels(), " and ",
        o.teacher_channels());
  if (o.adapter() == "conv1x1") {
    conv_ = register_module("adapter", torch::nn::Conv2d(torch::nn::Conv2dOptions(o.student_channels(),
                                                                                 o.teacher_channels(), 1)));
  } else if (o.adapter() == "linear") {
    linear_ = register_module("adapter", torch::nn::Linear(o.student_channels(), o.teacher_channels()));
  } else {
    fail("HintObjective: adapter must be conv1x1 or linear, got \"", o.adapter(), "\"");
  }
}

std::vector<LossTerm> HintObjective::terms(const StepContext& c) {
  const auto& o = options_;
  // A bf16 student's features (autocast) are promoted: the adapter and the loss run in float32.
  check(c.student_features.count(o.student_feature()) == 1 && c.teacher_features.count(o.teacher_feature()) == 1,
        "hint: the step holds no student feature '", o.student_feature(), "' or teacher feature '",
        o.teacher_feature(), "'");
  auto fs = detail::promote(c.student_features.at(o.student_feature()));
  auto ft = detail::promote(c.teacher_features.at(o.teacher_feature()).detach());
  torch::Tensor adapted;
  if (conv_) {
    check(fs.dim() == 4, "hint: the conv1x1 adapter needs a [B, C, H, W] student feature, '", o.student_feature(),
          "' is ", fs.sizes());
    adapted = conv_(fs);
  } else {
    adapted = linear_(fs.flatten(1));
    ft = ft.flatten(1);
  }
  check(adapted.sizes() == ft.sizes(), "hint: the adapted student feature '", o.student_feature(), "' has shape ",
        adapted.sizes(), " but the teacher feature '", o.teacher_feature(), "' has ", ft.sizes());
  auto per_sample = (adapted - ft.to(adapted.scalar_type())).pow(2).flatten(1).mean(1);
  return {{"hint", reduce(per_sample, c), 1.0}};
}

CompositeObjective& CompositeObjective::add(const std::string& name, std::shared_ptr<Objective> objective,
                                            Schedule weight) {
  check(!name.empty() && name.find('.') == std::string::npos,
        "CompositeObjective::add: a name must be non-empty and hold no '.', got \"", name, "\"");
  check(objective != nullptr, "CompositeObjective::add: objective '", name, "' is null");
  for (const auto& e : entries_) check(e.name != name, "CompositeObjective::add: '", name, "' is added twice");
  register_module(name, objective);
  entries_.push_back({name, std::move(objective), std::move(weight)});
  return *this;
}

std::vector<LossTerm> CompositeObjective::terms(const StepContext& c) {
  std::vector<LossTerm> out;
  for (const auto& e : entries_) {
    if (e.off()) continue;
    const double w = e.weight.at(c.progress);
    auto ts = e.objective->terms(c);
    for (auto& t : ts) {
      out.push_back({ts.size() == 1 ? e.name : e.name + "." + t.name, std::move(t.value), t.weight * w});
    }
  }
  return out;
}

namespace {
template <typename F>
std::vector<std::string> union_of(const std::vector<std::shared_ptr<Objective>>& objs, F features) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& o : objs) {
    for (auto& f : features(*o)) {
      if (seen.insert(f).second) out.push_back(f);
    }
  }
  return out;
}
}  // namespace

std::vector<std::string> CompositeObjective::student_features() const {
  std::vector<std::shared_ptr<Objective>> objs;
  for (const auto& e : entries_) objs.push_back(e.objective);
  return union_of(objs, [](const Objective& o) { return o.student_features(); });
}

std::vector<std::string> CompositeObjective::teacher_features() const {
  std::vector<std::shared_ptr<Objective>> objs;
  for (const auto& e : entries_) objs.push_back(e.objective);
  return union_of(objs, [](const Objective& o) { return o.teacher_features(); });
}

bool CompositeObjective::needs_teacher() const {
  for (const auto& e : entries_) {
    if (!e.off() && e.objective->needs_teacher()) return true;
  }
  return false;
}

bool CompositeObjective::needs_labels() const {
  for (const auto& e : entries_) {
    if (!e.off() && e.objective->needs_labels()) return true;
  }
  return false;
}

}  // namespace kdistill
