#include "kdistill/losses/sparse.h"

#include <cmath>
#include <limits>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "losses/kd_loss_impl.h"

namespace kdistill {
namespace {

// The log-probabilities of every class but those in `indices`, summed: log(1 - sum_{c in I} p_c),
// from the full log-softmax `log_p` [..., C] (-inf when I covers every class).
torch::Tensor log_outside(const torch::Tensor& log_p, const torch::Tensor& indices) {
  auto rest = log_p.scatter(-1, indices, -std::numeric_limits<double>::infinity());
  return torch::logsumexp(rest, -1);
}

}  // namespace

TopKTargets topk_targets(const torch::Tensor& teacher_logits, int64_t k) {
  const char* fn = "topk_targets";
  detail::check_logits(fn, "teacher_logits", teacher_logits, true);
  const int64_t classes = teacher_logits.size(-1);
  check(k >= 1 && k <= classes, fn, ": k must be in [1, ", classes, "], got ", k);
  torch::NoGradGuard no_grad;
  auto log_p = torch::log_softmax(detail::promote(teacher_logits.detach()), -1);
  auto [values, indices] = log_p.topk(k, -1, /*largest=*/true, /*sorted=*/true);
  TopKTargets t;
  t.indices = indices;
  t.log_probs = values;
  t.log_tail = k == classes ? torch::full(values.sizes().slice(0, values.dim() - 1),
                                          -std::numeric_limits<double>::infinity(), values.options())
                            : log_outside(log_p, indices);
  return t;
}

namespace detail {

void check_topk_targets(const char* fn, const torch::Tensor& student_logits, const TopKTargets& targets) {
  const auto& idx = targets.indices;
  const auto& lp = targets.log_probs;
  check(idx.defined() && lp.defined() && targets.log_tail.defined(), fn, ": the targets are incomplete");
  const auto batch = student_logits.sizes().slice(0, student_logits.dim() - 1);
  check(idx.dim() == student_logits.dim() && idx.sizes().slice(0, idx.dim() - 1) == batch, fn,
        ": indices must be [..., k] over the student's ", student_logits.sizes(), ", got ", idx.sizes());
  check(lp.sizes() == idx.sizes(), fn, ": log_probs must have the indices' shape ", idx.sizes(), ", got ",
        lp.sizes());
  check(targets.log_tail.sizes() == batch, fn, ": log_tail must be ", batch, ", got ", targets.log_tail.sizes());
  check(!idx.is_floating_point() && !idx.is_complex(), fn, ": indices must be integers, got ", idx.scalar_type());
  check(lp.is_floating_point(), fn, ": log_probs must be floating point, got ", lp.scalar_type());
  const int64_t classes = student_logits.size(-1), k = idx.size(-1);
  check(k >= 1 && k <= classes, fn, ": k must be in [1, ", classes, "], got ", k);
  const auto index = idx.to(student_logits.device(), torch::kLong);
  check(index.min().item<int64_t>() >= 0 && index.max().item<int64_t>() < classes, fn, ": indices must be in [0, ",
        classes, ")");
}

std::pair<torch::Tensor, torch::Tensor> bucket_log_probs(const torch::Tensor& student_logits,
                                                         const TopKTargets& targets, double t) {
  const int64_t classes = student_logits.size(-1), k = targets.indices.size(-1);
  const auto index = targets.indices.to(student_logits.device(), torch::kLong);
  const auto& lp = targets.log_probs;
  auto log_q_full = torch::log_softmax(detail::promote(student_logits), -1);
  auto log_q = log_q_full.gather(-1, index);
  auto log_p = lp.detach().to(log_q.device(), log_q.scalar_type());
  if (k == classes) {  // no tail: the dense divergence
    if (t != 1.0) return {torch::log_softmax(log_q / t, -1), torch::log_softmax(log_p / t, -1)};
    return {log_q, log_p - torch::logsumexp(log_p, -1, true)};  // float16 storage: summing to 1 again
  }
  const auto log_tail = targets.log_tail.detach().to(log_p.device(), log_p.scalar_type());
  const auto rest = log_q_full.scatter(-1, index, -std::numeric_limits<double>::infinity());
  if (t == 1.0) {
    log_q = torch::cat({log_q, torch::logsumexp(rest, -1).unsqueeze(-1)}, -1);
    log_p = torch::cat({log_p, log_tail.unsqueeze(-1)}, -1);
    return {log_q, log_p - torch::logsumexp(log_p, -1, true)};
  }
  // Softened at T: the student's tail bucket exactly (sum over its tail classes of q_j^(1/T)); the
  // teacher's, whose tail classes are gone, as if shaped like the student's within the tail:
  // sum_j (p_tail q_j / q_tail)^(1/T) = (p_tail / q_tail)^(1/T) * sum_j q_j^(1/T).
  auto q_tail_t = torch::logsumexp(rest / t, -1);
  auto p_tail_t = (log_tail - torch::logsumexp(rest, -1).detach()) / t + q_tail_t.detach();
  log_q = torch::cat({log_q / t, q_tail_t.unsqueeze(-1)}, -1);
  log_p = torch::cat({log_p / t, p_tail_t.unsqueeze(-1)}, -1);
  return {torch::log_softmax(log_q, -1), torch::log_softmax(log_p, -1)};
}

}  // namespace detail

torch::Tensor sparse_divergence(const torch::Tensor& student_logits, const TopKTargets& targets,
                                const DivergenceOptions& options) {
  const char* fn = "sparse_divergence";
  detail::check_logits(fn, "student_logits", student_logits, true);
  detail::check_temperature(fn, options.temperature());
  detail::check_divergence_options(fn, options);
  detail::check_topk_targets(fn, student_logits, targets);
  const double t = options.temperature();
  auto [log_q, log_p] = detail::bucket_log_probs(student_logits, targets, t);
  return detail::divergence_from_log_probs(log_q, log_p, options) * (t * t);
}

SampledTargets sampled_targets(const torch::Tensor& teacher_logits, int64_t samples, double temperature,
                               at::Generator generator) {
  const char* fn = "sampled_targets";
  detail::check_logits(fn, "teacher_logits", teacher_logits, true);
  detail::check_temperature(fn, temperature);
  check(samples >= 1, fn, ": samples must be >= 1, got ", samples);
  torch::NoGradGuard no_grad;
  const int64_t classes = teacher_logits.size(-1);
  auto log_p = torch::log_softmax(detail::promote(teacher_logits.detach()).to(torch::kCPU) / temperature, -1)
                   .reshape({-1, classes});
  auto draws = torch::multinomial(log_p.exp(), samples, /*replacement=*/true, generator);  // [R, S]
  // The distinct classes of each row and their counts, without a [R, C] table: sort the draws,
  // number the runs of equal classes, and count per run.
  auto sorted = std::get<0>(draws.sort(1));
  auto first = torch::ones_like(sorted, torch::kBool);
  if (samples > 1) first.narrow(1, 1, samples - 1).copy_(sorted.narrow(1, 1, samples - 1) != sorted.narrow(1, 0, samples - 1));
  auto run = first.cumsum(1) - 1;
  auto counts = torch::zeros({sorted.size(0), samples}, torch::kFloat).scatter_add_(1, run, torch::ones_like(run, torch::kFloat));
  auto distinct = torch::full_like(sorted, -1).scatter_(1, run, sorted);
  auto [count, order] = torch::sort(counts, /*stable=*/true, 1, /*descending=*/true);
  const auto present = count > 0;
  SampledTargets t;
  t.indices = torch::where(present, distinct.gather(1, order), torch::full_like(order, -1));
  t.weights = count / static_cast<double>(samples);
  t.log_probs = torch::where(present, log_p.gather(1, t.indices.clamp_min(0)), torch::zeros_like(count));
  t.temperature = temperature;
  auto batch = teacher_logits.sizes().slice(0, teacher_logits.dim() - 1).vec();
  t.top1 = log_p.argmax(1).reshape(batch);
  batch.push_back(samples);
  t.indices = t.indices.reshape(batch);
  t.weights = t.weights.reshape(batch);
  t.log_probs = t.log_probs.reshape(batch);
  return t;
}

namespace detail {

void check_sampled_targets(const char* fn, const torch::Tensor& student_logits, const SampledTargets& targets) {
  const auto& idx = targets.indices;
  check(idx.defined() && targets.weights.defined() && targets.log_probs.defined(), fn, ": the targets are incomplete");
  const auto batch = student_logits.sizes().slice(0, student_logits.dim() - 1);
  check(idx.dim() == student_logits.dim() && idx.sizes().slice(0, idx.dim() - 1) == batch, fn,
        ": indices must be [..., S] over the student's ", student_logits.sizes(), ", got ", idx.sizes());
  check(targets.weights.sizes() == idx.sizes() && targets.log_probs.sizes() == idx.sizes(), fn,
        ": weights and log_probs must have the indices' shape ", idx.sizes(), ", got ", targets.weights.sizes(),
        " and ", targets.log_probs.sizes());
  check(!idx.is_floating_point() && !idx.is_complex(), fn, ": indices must be integers, got ", idx.scalar_type());
  check(targets.temperature > 0 && std::isfinite(targets.temperature), fn, ": the targets' temperature must be > 0, got ",
        targets.temperature);
  const int64_t classes = student_logits.size(-1);
  if (idx.numel() == 0) return;
  const auto index = idx.to(torch::kLong);
  check(index.min().item<int64_t>() >= -1 && index.max().item<int64_t>() < classes, fn,
        ": indices must be in [0, ", classes, ") or -1 (padding)");
}

torch::Tensor sampled_log_q(const torch::Tensor& student_logits, const SampledTargets& targets) {
  const double t = targets.temperature;
  auto log_q = torch::log_softmax(detail::promote(student_logits) / t, -1);
  return log_q.gather(-1, targets.indices.to(student_logits.device(), torch::kLong).clamp_min(0));
}

}  // namespace detail

torch::Tensor sampled_kl(const torch::Tensor& student_logits, const SampledTargets& targets) {
  const char* fn = "sampled_kl";
  detail::check_logits(fn, "student_logits", student_logits, true);
  detail::check_sampled_targets(fn, student_logits, targets);
  auto log_q = detail::sampled_log_q(student_logits, targets);
  auto w = targets.weights.detach().to(log_q.device(), log_q.scalar_type());
  auto log_p = targets.log_probs.detach().to(log_q.device(), log_q.scalar_type());
  const double t = targets.temperature;
  return (w * (log_p - log_q)).sum(-1) * (t * t);
}

torch::Tensor sampled_kl_loss(const torch::Tensor& student_logits, const SampledTargets& targets,
                              const torch::Tensor& mask) {
  return detail::masked_mean("sampled_kl_loss", sampled_kl(student_logits, targets), mask);
}

torch::Tensor sparse_divergence_loss(const torch::Tensor& student_logits, const TopKTargets& targets,
                                     const DivergenceOptions& options, const torch::Tensor& mask) {
  return detail::masked_mean("sparse_divergence_loss", sparse_divergence(student_logits, targets, options), mask);
}

}  // namespace kdistill
