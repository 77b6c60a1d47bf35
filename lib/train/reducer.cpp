#include "train/reducer.h"

#include <torch/torch.h>

#include <chrono>

#include "kdistill/core/error.h"

namespace kdistill::detail {

GradientReducer::GradientReducer(ProcessGroup& group, std::vector<torch::Tensor> params,
                                 std::vector<std::string> term_names, int64_t bucket_bytes)
    : group_(group), params_(std::move(params)), term_names_(std::move(term_names)) {
  check(bucket_bytes > 0, "GradientReducer: bucket_bytes must be > 0");
  // Buckets of about `bucket_bytes`, by parameter type and device (a bucket is one flat tensor).
  int64_t bytes = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    const bool same = i > 0 && p.scalar_type() == params_[i - 1].scalar_type() && p.device() == params_[i - 1].device();
    if (i == 0 || !same || bytes >= bucket_bytes) {
      first_.push_back(i);
      bytes = 0;
    }
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  first_.push_back(params_.size());
  for (size_t b = 0; b + 1 < first_.size(); ++b) {
    int64_t numel = 0;
    for (size_t i = first_[b]; i < first_[b + 1]; ++i) numel += params_[i].numel();
    buckets_.push_back(torch::empty({numel}, params_[first_[b]].options().requires_grad(false)));
  }
}

int64_t GradientReducer::bytes_per_step() const {
  int64_t bytes = static_cast<int64_t>((1 + term_names_.size()) * sizeof(double));
  for (const auto& b : buckets_) bytes += b.numel() * static_cast<int64_t>(b.element_size());
  return bytes;
}

void GradientReducer::reduce(StepOutcome& outcome, int64_t step) {
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  for (size_t b = 0; b + 1 < first_.size(); ++b) {
    int64_t offset = 0;
    for (size_t i = first_[b]; i < first_[b + 1]; ++i) {
      auto& p = params_[i];
      auto slot = buckets_[b].narrow(0, offset, p.numel());
      if (p.grad().defined()) {
        slot.copy_(p.grad().reshape({-1}));
      } else {
        slot.zero_();
      }
      offset += p.numel();
    }
  }
  // The loss and each term, by name, in double precision, on the buckets' device.
  auto values = torch::zeros({static_cast<int64_t>(1 + term_names_.size())}, torch::kDouble);
  auto v = values.accessor<double, 1>();
  v[0] = outcome.loss;
  for (const auto& [name, value] : outcome.terms) {
    for (size_t j = 0; j < term_names_.size(); ++j) {
      if (term_names_[j] == name) v[static_cast<int64_t>(j) + 1] += value;
    }
  }
  const auto device = buckets_.empty() ? torch::Device(torch::kCPU) : buckets_[0].device();
  std::vector<torch::Tensor> tensors = buckets_;
  tensors.push_back(values.to(device));
  group_.all_reduce_sum(tensors, "the gradient all-reduce of step " + std::to_string(step));
  values = tensors.back().cpu();
  for (size_t b = 0; b + 1 < first_.size(); ++b) {
    int64_t offset = 0;
    for (size_t i = first_[b]; i < first_[b + 1]; ++i) {
      auto& p = params_[i];
      auto slot = buckets_[b].narrow(0, offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(slot);
      } else {
        p.mutable_grad() = slot.clone();
      }
      offset += p.numel();
    }
  }
  v = values.accessor<double, 1>();
  outcome.loss = v[0];
  outcome.terms.clear();
  for (size_t j = 0; j < term_names_.size(); ++j) outcome.terms.emplace_back(term_names_[j], v[static_cast<int64_t>(j) + 1]);
  outcome.finite = std::isfinite(outcome.loss);
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace kdistill::detail
