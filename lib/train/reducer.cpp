#include "train/reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>

#include "kdistill/core/error.h"

namespace kdistill::detail {
namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

struct GradientReducer::Hook : torch::autograd::FunctionPostHook {
  Hook(GradientReducer* reducer, size_t param) : reducer(reducer), param(param) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    reducer->ready(param);
    return outputs;
  }
  GradientReducer* reducer;
  size_t param;
};

GradientReducer::GradientReducer(ProcessGroup& group, std::vector<torch::Tensor> params,
                                 std::vector<std::string> term_names, int64_t bucket_bytes)
    : group_(group), params_(std::move(params)), term_names_(std::move(term_names)) {
  check(bucket_bytes > 0, "GradientReducer: bucket_bytes must be > 0");
  // Buckets of about `bucket_bytes`, last parameter first, by type and device (one flat tensor each).
  bucket_of_.resize(params_.size());
  offset_.resize(params_.size());
  int64_t bytes = 0, numel = 0;
  const torch::Tensor* previous = nullptr;
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    const bool same = previous != nullptr && p.scalar_type() == previous->scalar_type() &&
                      p.device() == previous->device();
    if (!same || bytes >= bucket_bytes) {
      members_.emplace_back();
      bytes = numel = 0;
    }
    members_.back().push_back(k);
    bucket_of_[k] = members_.size() - 1;
    offset_[k] = numel;
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
    numel += p.numel();
    previous = &p;
  }
  for (const auto& m : members_) {
    int64_t n = 0;
    for (size_t k : m) n += params_[k].numel();
    buckets_.push_back(torch::empty({n}, params_[m.front()].options().requires_grad(false)));
  }
  filled_.assign(params_.size(), 0);
  missing_.resize(members_.size());
  for (size_t k = 0; k < params_.size(); ++k) {
    if (!params_[k].requires_grad()) continue;
    auto accumulator = torch::autograd::impl::grad_accumulator(params_[k]);
    if (!accumulator) continue;  // not a leaf: its gradient is filled in at reduce()
    hook_keys_.push_back(accumulator->add_post_hook(std::make_unique<Hook>(this, k)));
    accumulators_.push_back(std::move(accumulator));
  }
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
  pending_.clear();  // waits for anything still in flight (an exception unwound the step)
}

int64_t GradientReducer::bytes_per_step() const {
  int64_t bytes = static_cast<int64_t>((1 + term_names_.size()) * sizeof(double));
  for (const auto& b : buckets_) bytes += b.numel() * static_cast<int64_t>(b.element_size());
  return bytes;
}

void GradientReducer::arm(int64_t step) {
  const auto t0 = Clock::now();
  armed_ = true;
  step_ = step;
  clear();
  // Nothing will accumulate into a frozen parameter: its slot is filled now, so that its bucket
  // does not wait for the end of backward.
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < params_.size(); ++k) {
    if (!params_[k].requires_grad()) fill(k);
  }
  seconds_ += since(t0);
}

void GradientReducer::clear() {
  std::fill(filled_.begin(), filled_.end(), 0);
  for (size_t b = 0; b < members_.size(); ++b) missing_[b] = members_[b].size();
  next_ = 0;
}

void GradientReducer::fill(size_t k) {
  if (filled_[k]) return;
  const auto& p = params_[k];
  const size_t b = bucket_of_[k];
  auto slot = buckets_[b].narrow(0, offset_[k], p.numel());
  if (p.grad().defined()) {
    slot.copy_(p.grad().reshape({-1}));
  } else {
    slot.zero_();
  }
  filled_[k] = 1;
  --missing_[b];
}

void GradientReducer::start(size_t b) {
  std::vector<torch::Tensor> one{buckets_[b]};
  pending_.push_back(group_.all_reduce_sum_async(
      one, "the gradient all-reduce of step " + std::to_string(step_) + " (bucket " + std::to_string(b) + ")"));
}

void GradientReducer::ready(size_t k) {
  if (!armed_ || filled_[k]) return;
  const auto t0 = Clock::now();
  torch::NoGradGuard no_grad;
  fill(k);
  for (; next_ < members_.size() && missing_[next_] == 0; ++next_) {
    start(next_);
    ++started_in_backward_;
  }
  seconds_ += since(t0);
}

void GradientReducer::reduce(StepOutcome& outcome, int64_t step) {
  const auto t0 = Clock::now();
  torch::NoGradGuard no_grad;
  if (!armed_) clear();
  armed_ = false;
  step_ = step;
  for (; next_ < members_.size(); ++next_) {
    for (size_t k : members_[next_]) fill(k);
    start(next_);
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
  std::vector<torch::Tensor> sums{values.to(device)};
  pending_.push_back(group_.all_reduce_sum_async(sums, "the loss all-reduce of step " + std::to_string(step)));
  for (auto& p : pending_) p.wait();
  pending_.clear();
  for (size_t k = 0; k < params_.size(); ++k) {
    auto& p = params_[k];
    auto slot = buckets_[bucket_of_[k]].narrow(0, offset_[k], p.numel()).view(p.sizes());
    if (p.grad().defined()) {
      p.mutable_grad().copy_(slot);
    } else {
      p.mutable_grad() = slot.clone();
    }
  }
  values = sums[0].cpu();
  v = values.accessor<double, 1>();
  outcome.loss = v[0];
  outcome.terms.clear();
  for (size_t j = 0; j < term_names_.size(); ++j) outcome.terms.emplace_back(term_names_[j], v[static_cast<int64_t>(j) + 1]);
  outcome.finite = std::isfinite(outcome.loss);
  seconds_ += since(t0);
}

}  // namespace kdistill::detail
