#include "kdistill/losses/dkd.h"

#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "losses/kd_loss_impl.h"

namespace kdistill {
namespace detail {

std::pair<torch::Tensor, torch::Tensor> dkd_parts(const torch::Tensor& log_q, const torch::Tensor& log_p,
                                                  const torch::Tensor& targets) {
  auto index = targets.to(torch::kLong).unsqueeze(1);
  auto target = torch::zeros_like(log_q, torch::kBool).scatter_(1, index, true);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  // log of the target probability and of the rest (a logsumexp over the other classes, so that
  // 1 - p_g keeps its digits when p_g is close to 1).
  auto split = [&](const torch::Tensor& log_x) {
    auto others = log_x.masked_fill(target, neg_inf);
    auto log_rest = torch::logsumexp(others, 1, true);
    auto log_g = log_x.gather(1, index);
    return std::make_tuple(log_g, log_rest, others - log_rest);  // the last: log of the renormalised others
  };
  auto [pg, prest, p_hat] = split(log_p);
  auto [qg, qrest, q_hat] = split(log_q);
  auto binary_p = torch::cat({pg, prest}, 1), binary_q = torch::cat({qg, qrest}, 1);
  // The target class of p_hat is -inf - (-inf) in q_hat: masked by a = 0.
  auto nckd = kl_from_log(p_hat.masked_fill(target, neg_inf), q_hat.masked_fill(target, 0.0));
  return {kl_from_log(binary_p, binary_q), nckd};
}

}  // namespace detail

torch::Tensor dkd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                       const torch::Tensor& targets, const DKDLossOptions& options) {
  const char* fn = "dkd_loss";
  detail::check_pair(fn, student_logits, teacher_logits);
  check(student_logits.size(1) >= 2, fn, ": DKD needs at least 2 classes, got ", student_logits.size(1));
  detail::check_temperature(fn, options.temperature());
  check(options.alpha() >= 0 && std::isfinite(options.alpha()), fn, ": alpha must be >= 0, got ", options.alpha());
  check(options.beta() >= 0 && std::isfinite(options.beta()), fn, ": beta must be >= 0, got ", options.beta());
  detail::check_targets(fn, targets, student_logits.size(0), student_logits.size(1), options.ignore_index());
  const double t = options.temperature();
  auto log_q = torch::log_softmax(detail::promote(student_logits) / t, 1);
  auto log_p = torch::log_softmax(detail::promote(teacher_logits.detach()) / t, 1);
  auto y = targets.to(torch::kLong);
  y = torch::where(y == options.ignore_index(), log_p.argmax(1), y);
  auto [tckd, nckd] = detail::dkd_parts(log_q, log_p, y);
  return (options.alpha() * tckd + options.beta() * nckd).mean() * (t * t);
}

}  // namespace kdistill
