#include "kdistill/losses/tokens.h"

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill {

TokenReduction parse_token_reduction(const std::string& name) {
  if (name == "mean") return TokenReduction::kMean;
  if (name == "sequence_sum") return TokenReduction::kSequenceSum;
  fail("token reduction must be mean or sequence_sum, got \"", name, "\"");
}

std::string to_string(TokenReduction reduction) {
  return reduction == TokenReduction::kMean ? "mean" : "sequence_sum";
}

namespace {

void check_pair(const char* fn, const torch::Tensor& values, const torch::Tensor& targets) {
  check(targets.defined() && targets.dim() == 2, fn, ": targets must be [B, L], got shape ",
        targets.defined() ? targets.sizes() : torch::IntArrayRef{});
  check(values.defined() && values.dim() >= 2 && values.size(0) == targets.size(0) && values.size(1) == targets.size(1),
        fn, ": values must be [B, L, ...] with [B, L] = ", targets.sizes(), ", got shape ",
        values.defined() ? values.sizes() : torch::IntArrayRef{});
}

}  // namespace

torch::Tensor select_tokens(const torch::Tensor& values, const torch::Tensor& targets) {
  check_pair("select_tokens", values, targets);
  auto index = targets.reshape({-1}).ge(0).nonzero().squeeze(1).to(values.device());
  return values.flatten(0, 1).index_select(0, index);
}

torch::Tensor token_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, TokenReduction reduction) {
  check_pair("token_cross_entropy", logits, targets);
  check(logits.dim() == 3, "token_cross_entropy: logits must be [B, L, V], got shape ", logits.sizes());
  auto rows = select_tokens(logits, targets);
  if (rows.size(0) == 0) return (logits.sum() * 0).to(torch::kFloat);
  auto y = select_tokens(targets.unsqueeze(2), targets).squeeze(1).to(rows.device());
  // Reduced-precision logits are promoted: a bf16 log-softmax loses the tail.
  const bool reduced = rows.scalar_type() == torch::kBFloat16 || rows.scalar_type() == torch::kHalf;
  auto lp = torch::log_softmax(reduced ? rows.to(torch::kFloat) : rows, 1);
  auto sum = -lp.gather(1, y.unsqueeze(1)).sum();
  const double count = reduction == TokenReduction::kMean ? static_cast<double>(rows.size(0))
                                                          : static_cast<double>(logits.size(0));
  return sum / count;
}

StepContext token_context(const StepContext& ctx) {
  if (!ctx.student_logits.defined() || ctx.student_logits.dim() != 3) return ctx;
  constexpr const char* fn = "token_context";
  StepContext out = ctx;
  const auto& y = ctx.targets;
  check_pair(fn, ctx.student_logits, y);
  // Sparse targets: [B, L, k] per token, [B, L] per position.
  auto per_token = [&](const torch::Tensor& v) { return select_tokens(v, y); };
  auto per_position = [&](const torch::Tensor& v) { return select_tokens(v.unsqueeze(2), y).squeeze(1); };
  if (const auto& t = ctx.teacher_topk; t.indices.defined()) {
    out.teacher_topk = TopKTargets{per_token(t.indices), per_token(t.log_probs), per_position(t.log_tail)};
  }
  if (const auto& t = ctx.teacher_sampled; t.indices.defined()) {
    out.teacher_sampled = SampledTargets{per_token(t.indices), per_token(t.weights), per_token(t.log_probs),
                                         t.top1.defined() ? per_position(t.top1) : torch::Tensor(), t.temperature};
  }
  out.student_logits = select_tokens(ctx.student_logits, y);
  if (ctx.teacher_logits.defined()) {
    check(ctx.teacher_logits.sizes() == ctx.student_logits.sizes(), fn, ": teacher logits ",
          ctx.teacher_logits.sizes(), " do not match the student's ", ctx.student_logits.sizes());
    out.teacher_logits = select_tokens(ctx.teacher_logits, y);
  }
  for (auto& m : out.member_logits) m = select_tokens(m, y);
  if (ctx.sample_weights.defined()) {
    // Per sequence ([B]) or per position ([B, L]): either way one weight per selected token.
    auto w = ctx.sample_weights.dim() == 1 ? ctx.sample_weights.unsqueeze(1).expand(y.sizes()) : ctx.sample_weights;
    out.sample_weights = select_tokens(w.unsqueeze(2), y).squeeze(1);
  }
  out.targets = select_tokens(y.unsqueeze(2), y).squeeze(1);
  out.all_labelled = true;
  return out;
}

}  // namespace kdistill
