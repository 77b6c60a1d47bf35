#include "kdistill/losses/kd_loss.h"

#include <cmath>
#include <string>

#include <torch/nn/functional/loss.h>
#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "core/finite.h"
#include "core/finite.h"
#include "losses/kd_loss_impl.h"

namespace kdistill {
namespace {

using detail::check_logits;
using detail::check_pair;
using detail::check_targets;
using detail::check_temperature;
using detail::promote;

}  // namespace

namespace detail {

void check_logits(const char* fn, const char* name, const torch::Tensor& x, bool any_rank) {
  check(x.defined(), fn, ": ", name, " is undefined");
  if (any_rank) {
    check(x.dim() >= 1, fn, ": ", name, " must be [..., classes], got a scalar");
  } else {
    check(x.dim() == 2, fn, ": ", name, " must be 2-D [batch, classes], got shape ", x.sizes());
  }
  check(x.is_floating_point(), fn, ": ", name, " must be floating point, got ", x.scalar_type());
  check(x.numel() > 0, fn, ": ", name, " is empty, shape ", x.sizes());
  if (auto row = first_nonfinite_row(x.detach().reshape({-1, x.size(-1)})); row >= 0) {
    fail(fn, ": ", name, " has a NaN or infinite value in row ", row);
  }
}

void check_pair(const char* fn, const torch::Tensor& s, const torch::Tensor& t, bool any_rank) {
  check_logits(fn, "student_logits", s, any_rank);
  check_logits(fn, "teacher_logits", t, any_rank);
  check(s.sizes() == t.sizes(), fn, ": student_logits and teacher_logits must have the same shape, got ",
        s.sizes(), " and ", t.sizes());
}

void check_temperature(const char* fn, double temperature) {
  check(temperature > 0 && std::isfinite(temperature), fn, ": temperature must be > 0, got ", temperature);
}

void check_targets(const char* fn, const torch::Tensor& y, int64_t batch, int64_t classes,
                   int64_t ignore_index) {
  check(y.defined(), fn, ": targets is undefined");
  check(y.dim() == 1, fn, ": targets must be 1-D [batch], got shape ", y.sizes());
  check(!y.is_floating_point() && !y.is_complex() && y.scalar_type() != torch::kBool, fn,
        ": targets must be an integer tensor, got ", y.scalar_type());
  check(y.size(0) == batch, fn, ": targets has ", y.size(0), " entries but the logits have batch size ", batch);
  auto ok = ((y >= 0) & (y < classes)) | (y == ignore_index);
  if (!ok.all().item<bool>()) {
    auto i = (~ok).nonzero()[0][0].item<int64_t>();
    fail(fn, ": targets[", i, "] = ", y[i].item<int64_t>(), " is outside [0, ", classes,
         ") and is not ignore_index (", ignore_index, ")");
  }
}

// Reduced-precision logits are promoted for the softmaxes, so that log-probabilities of unlikely
// classes keep their digits; the result stays differentiable back to the original dtype.
torch::Tensor promote(const torch::Tensor& x) {
  auto dt = x.scalar_type();
  return (dt == torch::kBFloat16 || dt == torch::kHalf) ? x.to(torch::kFloat) : x;
}

torch::Tensor soft_kl(const torch::Tensor& s, const torch::Tensor& t, double temperature) {
  auto log_ps = torch::log_softmax(promote(s) / temperature, 1);
  auto log_pt = torch::log_softmax(promote(t.detach()) / temperature, 1);
  auto kl = (log_pt.exp() * (log_pt - log_ps)).sum();
  return kl * (temperature * temperature / static_cast<double>(s.size(0)));
}

torch::Tensor hard_ce(const torch::Tensor& s, const torch::Tensor& y, int64_t ignore_index) {
  namespace F = torch::nn::functional;
  auto targets = y.to(torch::kLong);
  auto summed = F::nll_loss(torch::log_softmax(promote(s), 1), targets,
                            F::NLLLossFuncOptions().ignore_index(ignore_index).reduction(torch::kSum));
  // Divide by the labelled count without a host sync; an all-unlabelled batch gives 0, not 0/0.
  auto labelled = (targets != ignore_index).sum().clamp_min(1).to(summed.scalar_type());
  return summed / labelled;
}

torch::Tensor plain_ce(const torch::Tensor& s, const torch::Tensor& y) {
  return torch::nll_loss(torch::log_softmax(promote(s), 1), y);
}

torch::Tensor kd_loss_unchecked(const torch::Tensor& s, const torch::Tensor& t, const torch::Tensor& y,
                                const KDLossOptions& options, bool all_labelled) {
  const double alpha = options.alpha();
  if (alpha == 1.0) return soft_kl(s, t, options.temperature());
  auto hard = all_labelled ? plain_ce(s, y) : hard_ce(s, y, options.ignore_index());
  if (alpha == 0.0) return hard;
  return alpha * soft_kl(s, t, options.temperature()) + (1.0 - alpha) * hard;
}

}  // namespace detail

using detail::hard_ce;
using detail::soft_kl;

torch::Tensor kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                      const torch::Tensor& targets, const KDLossOptions& options) {
  constexpr const char* fn = "kd_loss";
  check_pair(fn, student_logits, teacher_logits);
  check_temperature(fn, options.temperature());
  check(options.alpha() >= 0 && options.alpha() <= 1, fn, ": alpha must be in [0, 1], got ", options.alpha());
  check_targets(fn, targets, student_logits.size(0), student_logits.size(1), options.ignore_index());
  return detail::kd_loss_unchecked(student_logits, teacher_logits, targets, options);
}

torch::Tensor kd_soft_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                           double temperature) {
  constexpr const char* fn = "kd_soft_loss";
  check_pair(fn, student_logits, teacher_logits);
  check_temperature(fn, temperature);
  return soft_kl(student_logits, teacher_logits, temperature);
}

torch::Tensor soft_target_cross_entropy(const torch::Tensor& student_logits,
                                        const torch::Tensor& teacher_logits, double temperature) {
  constexpr const char* fn = "soft_target_cross_entropy";
  check_pair(fn, student_logits, teacher_logits);
  check_temperature(fn, temperature);
  auto log_ps = torch::log_softmax(promote(student_logits) / temperature, 1);
  auto pt = torch::softmax(promote(teacher_logits.detach()) / temperature, 1);
  return -(pt * log_ps).sum() * (temperature * temperature / static_cast<double>(student_logits.size(0)));
}

torch::Tensor logit_mse(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits) {
  check_pair("logit_mse", student_logits, teacher_logits);
  return (promote(student_logits) - promote(teacher_logits.detach())).pow(2).mean();
}

torch::Tensor masked_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                   int64_t ignore_index) {
  constexpr const char* fn = "masked_cross_entropy";
  check_logits(fn, "logits", logits);
  check_targets(fn, targets, logits.size(0), logits.size(1), ignore_index);
  return hard_ce(logits, targets, ignore_index);
}

KDLossImpl::KDLossImpl(KDLossOptions options_) : options(std::move(options_)) { reset(); }

void KDLossImpl::reset() {}

torch::Tensor KDLossImpl::forward(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                                  const torch::Tensor& targets) {
  return kd_loss(student_logits, teacher_logits, targets, options);
}

}  // namespace kdistill
