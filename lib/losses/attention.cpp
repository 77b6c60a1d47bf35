#include "kdistill/losses/attention.h"

#include <cmath>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "losses/kd_loss_impl.h"

namespace kdistill {

torch::Tensor attention_map(const torch::Tensor& feature, double p) {
  check(feature.defined() && feature.dim() == 4, "attention_map: feature must be [B, C, H, W], got shape ",
        feature.defined() ? feature.sizes() : torch::IntArrayRef{});
  // p < 1 would give |f|^p an infinite slope at f = 0 (every ReLU zero): NaN gradients.
  check(p >= 1 && std::isfinite(p), "attention_map: p must be >= 1, got ", p);
  auto f = detail::promote(feature);
  auto a = (p == 2.0 ? f.pow(2) : f.abs().pow(p)).mean(1).flatten(1);
  return torch::nn::functional::normalize(a, torch::nn::functional::NormalizeFuncOptions().p(2).dim(1));
}

torch::Tensor attention_transfer(const torch::Tensor& student_feature, const torch::Tensor& teacher_feature, double p) {
  check(student_feature.defined() && teacher_feature.defined() && student_feature.dim() == 4 &&
            teacher_feature.dim() == 4,
        "attention_transfer: features must be [B, C, H, W]");
  check(student_feature.size(0) == teacher_feature.size(0), "attention_transfer: batch sizes differ, ",
        student_feature.size(0), " and ", teacher_feature.size(0));
  auto fs = student_feature;
  auto ft = teacher_feature.detach();
  const int64_t h = std::min(fs.size(2), ft.size(2)), w = std::min(fs.size(3), ft.size(3));
  auto pool = [&](const torch::Tensor& f) {
    return f.size(2) == h && f.size(3) == w ? f : torch::adaptive_avg_pool2d(detail::promote(f), {h, w});
  };
  auto diff = attention_map(pool(fs), p) - attention_map(pool(ft), p);
  return diff.pow(2).mean(1);
}

}  // namespace kdistill
