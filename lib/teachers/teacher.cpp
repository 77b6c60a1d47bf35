#include "kdistill/teachers/teacher.h"

#include <cmath>

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill {

ModelTeacher::ModelTeacher(Model model) : model_(std::move(model)) {
  check(model_.defined(), "ModelTeacher: the model is empty");
  model_.eval();
  for (auto& p : model_.parameters()) p.set_requires_grad(false);
}

torch::Tensor ModelTeacher::logits(const torch::Tensor& inputs, const torch::Tensor&) {
  torch::NoGradGuard no_grad;
  const auto device = model_.device();
  auto out = model_.forward(inputs.device() == device ? inputs : inputs.to(device));
  return out.device() == inputs.device() ? out : out.to(inputs.device());
}

std::string ModelTeacher::describe() const { return model_.arch().empty() ? "model" : model_.arch(); }

CallableTeacher::CallableTeacher(std::function<torch::Tensor(const torch::Tensor&)> fn, std::string name)
    : fn_(std::move(fn)), name_(std::move(name)) {
  check(static_cast<bool>(fn_), "CallableTeacher: the function is empty");
}

torch::Tensor CallableTeacher::logits(const torch::Tensor& inputs, const torch::Tensor&) {
  torch::NoGradGuard no_grad;
  return fn_(inputs);
}

EnsembleTeacher::EnsembleTeacher(std::vector<std::shared_ptr<Teacher>> members) : members_(std::move(members)) {
  check(!members_.empty(), "EnsembleTeacher: no members");
  for (size_t i = 0; i < members_.size(); ++i) check(members_[i] != nullptr, "EnsembleTeacher: member ", i, " is null");
}

torch::Tensor EnsembleTeacher::logits(const torch::Tensor& inputs, const torch::Tensor& indices) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> logp;
  for (size_t i = 0; i < members_.size(); ++i) {
    auto l = members_[i]->logits(inputs, indices);
    // check() evaluates its message eagerly: only name member 0's shape once it exists.
    if (!logp.empty() && l.sizes() != logp.front().sizes()) {
      fail("EnsembleTeacher: member ", i, " gave logits ", l.sizes(), ", member 0 gave ", logp.front().sizes());
    }
    logp.push_back(torch::log_softmax(l.to(torch::kFloat), 1));
  }
  return torch::logsumexp(torch::stack(logp), 0) - std::log(static_cast<double>(members_.size()));
}

std::string EnsembleTeacher::describe() const {
  std::string s = "ensemble(";
  for (size_t i = 0; i < members_.size(); ++i) s += (i ? "," : "") + members_[i]->describe();
  return s + ")";
}

}  // namespace kdistill
