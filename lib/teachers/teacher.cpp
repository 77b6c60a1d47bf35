#include "kdistill/teachers/teacher.h"

#include <cmath>

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill {

TeacherOutput Teacher::outputs(const torch::Tensor& inputs, const torch::Tensor& indices,
                               const std::vector<std::string>& features) {
  if (!features.empty()) {
    fail("teacher ", describe(), " has no features to tap (asked for '", features.front(), "'): ",
         samples() >= 0 ? "a logit cache stores only logits; use a live teacher model for feature objectives"
                        : "only a teacher over a Model can give intermediate outputs");
  }
  TeacherOutput out;
  out.logits = logits(inputs, indices);
  return out;
}

ModelTeacher::ModelTeacher(Model model) : model_(std::move(model)) {
  check(model_.defined(), "ModelTeacher: the model is empty");
  model_.eval();
  for (auto& p : model_.parameters()) p.set_requires_grad(false);
}

namespace {

// `t` on `device`, bf16 and fp16 as float32: a bf16 teacher returns float32 like every other.
torch::Tensor back(const torch::Tensor& t, const torch::Device& device) {
  const auto dt = t.scalar_type();
  return t.to(device, dt == torch::kBFloat16 || dt == torch::kHalf ? torch::kFloat : dt);
}

}  // namespace

void ModelTeacher::set_precision(Precision precision) {
  compute_ = precision == Precision::kFloat32 ? Model() : model_.with_precision(precision);
  if (compute_.defined()) compute_.eval();
}

torch::Tensor ModelTeacher::logits(const torch::Tensor& inputs, const torch::Tensor& indices) {
  return outputs(inputs, indices).logits;
}

TeacherOutput ModelTeacher::outputs(const torch::Tensor& inputs, const torch::Tensor&,
                                    const std::vector<std::string>& features) {
  torch::NoGradGuard no_grad;
  const auto device = model_.device();
  auto x = inputs.device() == device ? inputs : inputs.to(device);
  auto r = (compute_.defined() ? compute_ : model_).forward_with_features(x, features);
  TeacherOutput out;
  out.logits = back(r.logits, inputs.device());
  for (auto& [name, f] : r.features) out.features[name] = back(f, inputs.device());
  return out;
}

std::string ModelTeacher::describe() const { return model_.arch().empty() ? "model" : model_.arch(); }

CallableTeacher::CallableTeacher(std::function<torch::Tensor(const torch::Tensor&)> fn, std::string name)
    : fn_(std::move(fn)), name_(std::move(name)) {
  check(static_cast<bool>(fn_), "CallableTeacher: the function is empty");
}

torch::Tensor CallableTeacher::logits(const torch::Tensor& inputs, const torch::Tensor&) {
  torch::NoGradGuard no_grad;
  if (precision_ == Precision::kFloat32) return fn_(inputs);
  AutocastGuard bf16(inputs.device(), precision_);
  return back(fn_(inputs), inputs.device());
}

EnsembleTeacher::EnsembleTeacher(std::vector<std::shared_ptr<Teacher>> members, std::vector<double> weights)
    : members_(std::move(members)), weights_(std::move(weights)) {
  check(!members_.empty(), "EnsembleTeacher: no members");
  for (size_t i = 0; i < members_.size(); ++i) {
    check(members_[i] != nullptr, "EnsembleTeacher: member ", i, " is null");
    check(members_[i]->dense(), "EnsembleTeacher: member ", i, " (", members_[i]->describe(),
          ") is a sparse cache; an ensemble averages dense distributions");
  }
  if (weights_.empty()) weights_.assign(members_.size(), 1.0);
  check(weights_.size() == members_.size(), "EnsembleTeacher: ", members_.size(), " members but ", weights_.size(),
        " weights");
  double sum = 0;
  for (size_t i = 0; i < weights_.size(); ++i) {
    check(weights_[i] > 0 && std::isfinite(weights_[i]), "EnsembleTeacher: weight of member ", i,
          " must be > 0, got ", weights_[i]);
    sum += weights_[i];
  }
  for (auto& w : weights_) w /= sum;
  // Rows looked up by index: every member that does so must hold the same rows.
  for (size_t i = 0; i < members_.size(); ++i) {
    const int64_t n = members_[i]->samples();
    if (n < 0) continue;
    check(samples_ < 0 || samples_ == n, "EnsembleTeacher: member ", i, " (", members_[i]->describe(), ") holds ", n,
          " samples, an earlier cached member ", samples_);
    samples_ = n;
  }
}

TeacherOutput EnsembleTeacher::outputs(const torch::Tensor& inputs, const torch::Tensor& indices,
                                       const std::vector<std::string>& features) {
  check(features.empty(), "EnsembleTeacher: features are not available from an ensemble (asked for '",
        features.empty() ? "" : features.front(), "'); tap a single teacher");
  torch::NoGradGuard no_grad;
  TeacherOutput out;
  std::vector<torch::Tensor> logp;
  for (size_t i = 0; i < members_.size(); ++i) {
    auto l = members_[i]->logits(inputs, indices);
    // check() evaluates its message eagerly: only name member 0's shape once it exists.
    if (!logp.empty() && l.sizes() != logp.front().sizes()) {
      fail("EnsembleTeacher: member ", i, " gave logits ", l.sizes(), ", member 0 gave ", logp.front().sizes());
    }
    logp.push_back(torch::log_softmax(l.to(torch::kFloat), 1) + std::log(weights_[i]));
    out.member_logits.push_back(std::move(l));
  }
  out.member_weights = weights_;
  out.logits = torch::logsumexp(torch::stack(logp), 0);
  return out;
}

torch::Tensor EnsembleTeacher::logits(const torch::Tensor& inputs, const torch::Tensor& indices) {
  return outputs(inputs, indices).logits;
}

void EnsembleTeacher::set_precision(Precision precision) {
  for (auto& m : members_) m->set_precision(precision);
}

int64_t EnsembleTeacher::block_rows() const {
  for (const auto& m : members_) {
    if (m->block_rows() > 0) return m->block_rows();
  }
  return 0;
}

void EnsembleTeacher::plan(const torch::Tensor& order) {
  for (auto& m : members_) m->plan(order);
}

int64_t EnsembleTeacher::num_parameters() const {
  int64_t n = 0;
  for (const auto& m : members_) {
    if (m->num_parameters() < 0) return -1;
    n += m->num_parameters();
  }
  return n;
}

std::string EnsembleTeacher::describe() const {
  std::string s = "ensemble(";
  for (size_t i = 0; i < members_.size(); ++i) s += (i ? "," : "") + members_[i]->describe();
  return s + ")";
}

}  // namespace kdistill
