#include "kdistill/losses/divergence.h"

#include <cmath>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "losses/kd_loss_impl.h"

namespace kdistill {
namespace {

using detail::kl_from_log;

// log(w a + (1 - w) b) from log a and log b, for w in [0, 1).
torch::Tensor log_mixture(const torch::Tensor& log_a, const torch::Tensor& log_b, double w) {
  if (w == 0) return log_b;
  return torch::logaddexp(log_a + std::log(w), log_b + std::log1p(-w));
}

}  // namespace

namespace detail {

torch::Tensor kl_from_log(const torch::Tensor& log_a, const torch::Tensor& log_b) {
  auto a = log_a.exp();
  return torch::where(a > 0, a * (log_a - log_b), torch::zeros_like(a)).sum(-1);
}

void check_divergence_options(const char* fn, const DivergenceOptions& o) {
  const auto& k = o.kind();
  check(k == "kl" || k == "reverse_kl" || k == "jsd" || k == "tvd" || k == "skew_kl" || k == "skew_reverse_kl", fn,
        ": kind must be kl, reverse_kl, jsd, tvd, skew_kl or skew_reverse_kl, got \"", k, "\"");
  check(o.beta() > 0 && o.beta() < 1, fn, ": beta must be in (0, 1), got ", o.beta());
  check(o.skew() >= 0 && o.skew() < 1, fn, ": skew must be in [0, 1), got ", o.skew());
}

torch::Tensor divergence_from_log_probs(const torch::Tensor& log_q, const torch::Tensor& log_p,
                                        const DivergenceOptions& o) {
  const auto& k = o.kind();
  if (k == "kl") return kl_from_log(log_p, log_q);
  if (k == "reverse_kl") return kl_from_log(log_q, log_p);
  if (k == "tvd") return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1);
  if (k == "skew_kl") return kl_from_log(log_p, log_mixture(log_p, log_q, o.skew()));
  if (k == "skew_reverse_kl") return kl_from_log(log_q, log_mixture(log_q, log_p, o.skew()));
  TORCH_INTERNAL_ASSERT(k == "jsd", "divergence kind ", k);
  const double b = o.beta();
  auto log_m = log_mixture(log_p, log_q, b);
  return b * kl_from_log(log_p, log_m) + (1 - b) * kl_from_log(log_q, log_m);
}

torch::Tensor masked_mean(const char* fn, const torch::Tensor& d, const torch::Tensor& mask) {
  if (!mask.defined()) return d.mean();
  check(mask.sizes() == d.sizes(), fn, ": mask must have the logits' shape without the class dimension, ", d.sizes(),
        ", got ", mask.sizes());
  auto w = mask.to(d.device(), d.scalar_type());
  return (d * w).sum() / w.sum().clamp_min(1e-12);
}

}  // namespace detail

torch::Tensor divergence(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                         const DivergenceOptions& options) {
  const char* fn = "divergence";
  detail::check_pair(fn, student_logits, teacher_logits, true);
  detail::check_temperature(fn, options.temperature());
  detail::check_divergence_options(fn, options);
  const double t = options.temperature();
  auto log_q = torch::log_softmax(detail::promote(student_logits) / t, -1);
  auto log_p = torch::log_softmax(detail::promote(teacher_logits.detach()) / t, -1);
  return detail::divergence_from_log_probs(log_q, log_p, options) * (t * t);
}

torch::Tensor divergence_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                              const DivergenceOptions& options, const torch::Tensor& mask) {
  return detail::masked_mean("divergence_loss", divergence(student_logits, teacher_logits, options), mask);
}

}  // namespace kdistill
