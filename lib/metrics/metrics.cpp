#include "kdistill/metrics/metrics.h"

#include <algorithm>

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill::metrics {
namespace {

void check_inputs(const char* fn, const torch::Tensor& logits, const torch::Tensor& targets) {
  check(logits.defined() && logits.dim() == 2, fn, ": logits must be 2-D [N, C], got shape ",
        logits.defined() ? logits.sizes() : torch::IntArrayRef{});
  check(targets.defined() && targets.dim() == 1 && targets.size(0) == logits.size(0), fn,
        ": targets must be 1-D with ", logits.size(0), " entries, got shape ",
        targets.defined() ? targets.sizes() : torch::IntArrayRef{});
}

// Logits and targets of the labelled rows only, in float64 on the CPU.
std::pair<torch::Tensor, torch::Tensor> labelled(const torch::Tensor& logits, const torch::Tensor& targets) {
  auto y = targets.to(torch::kCPU, torch::kLong);
  auto keep = (y >= 0).nonzero().squeeze(1);
  return {logits.detach().to(torch::kCPU, torch::kDouble).index_select(0, keep), y.index_select(0, keep)};
}

}  // namespace

double accuracy(const torch::Tensor& logits, const torch::Tensor& targets) {
  return top_k_accuracy(logits, targets, 1);
}

double top_k_accuracy(const torch::Tensor& logits, const torch::Tensor& targets, int64_t k) {
  check_inputs("top_k_accuracy", logits, targets);
  check(k >= 1, "top_k_accuracy: k must be >= 1, got ", k);
  auto [l, y] = labelled(logits, targets);
  if (y.numel() == 0) return 0.0;
  k = std::min<int64_t>(k, l.size(1));
  auto top = std::get<1>(l.topk(k, 1));
  return top.eq(y.unsqueeze(1)).any(1).to(torch::kDouble).mean().item<double>();
}

double agreement(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits) {
  check(student_logits.defined() && teacher_logits.defined() && student_logits.dim() == 2 &&
            student_logits.sizes() == teacher_logits.sizes(),
        "agreement: logits must be 2-D and of the same shape, got ",
        student_logits.defined() ? student_logits.sizes() : torch::IntArrayRef{}, " and ",
        teacher_logits.defined() ? teacher_logits.sizes() : torch::IntArrayRef{});
  if (student_logits.size(0) == 0) return 0.0;
  auto a = student_logits.detach().argmax(1).cpu();
  auto b = teacher_logits.detach().argmax(1).cpu();
  return a.eq(b).to(torch::kDouble).mean().item<double>();
}

double expected_calibration_error(const torch::Tensor& logits, const torch::Tensor& targets, int64_t bins) {
  check_inputs("expected_calibration_error", logits, targets);
  check(bins >= 1, "expected_calibration_error: bins must be >= 1, got ", bins);
  auto [l, y] = labelled(logits, targets);
  const int64_t n = y.numel();
  if (n == 0) return 0.0;
  auto probs = torch::softmax(l, 1);
  auto [conf, pred] = probs.max(1);
  auto correct = pred.eq(y).to(torch::kDouble);
  // Bin b holds confidences in (b/bins, (b+1)/bins]; confidence 0 cannot occur after a softmax.
  auto bin = (conf * static_cast<double>(bins)).ceil().to(torch::kLong).sub(1).clamp(0, bins - 1);
  auto count = torch::zeros({bins}, torch::kDouble).index_add_(0, bin, torch::ones_like(conf));
  auto conf_sum = torch::zeros({bins}, torch::kDouble).index_add_(0, bin, conf);
  auto acc_sum = torch::zeros({bins}, torch::kDouble).index_add_(0, bin, correct);
  return ((acc_sum - conf_sum).abs().sum() / static_cast<double>(n)).item<double>();
}

double nll(const torch::Tensor& logits, const torch::Tensor& targets) {
  check_inputs("nll", logits, targets);
  auto [l, y] = labelled(logits, targets);
  if (y.numel() == 0) return 0.0;
  return torch::nll_loss(torch::log_softmax(l, 1), y).item<double>();
}

torch::Tensor confusion_matrix(const torch::Tensor& logits, const torch::Tensor& targets) {
  check_inputs("confusion_matrix", logits, targets);
  auto [l, y] = labelled(logits, targets);
  const int64_t c = logits.size(1);
  check(y.numel() == 0 || y.max().item<int64_t>() < c, "confusion_matrix: a target is >= the class count ", c);
  auto flat = y * c + l.argmax(1);
  return torch::bincount(flat, {}, c * c).view({c, c});
}

Evaluation evaluate_logits(const torch::Tensor& logits, const torch::Tensor& targets,
                           const torch::Tensor& teacher_logits) {
  if (logits.dim() == 3 && targets.dim() == 2) {
    // Sequences: the counted positions only, as rows; padding never enters the agreement.
    check(logits.size(0) == targets.size(0) && logits.size(1) == targets.size(1), "evaluate_logits: logits ",
          logits.sizes(), " do not match targets ", targets.sizes());
    auto index = targets.reshape({-1}).ge(0).nonzero().squeeze(1);
    auto rows = [&](const torch::Tensor& t) { return t.flatten(0, 1).index_select(0, index.to(t.device())); };
    return evaluate_logits(rows(logits), targets.reshape({-1}).index_select(0, index),
                           teacher_logits.defined() ? rows(teacher_logits) : teacher_logits);
  }
  Evaluation e;
  e.samples = logits.size(0);
  e.accuracy = accuracy(logits, targets);
  e.top5_accuracy = top_k_accuracy(logits, targets, 5);
  e.nll = nll(logits, targets);
  e.ece = expected_calibration_error(logits, targets);
  if (teacher_logits.defined()) e.agreement = agreement(logits, teacher_logits);
  return e;
}

}  // namespace kdistill::metrics
