#include "kdistill/bench/generation.h"

#include <torch/script.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "kdistill/bench/latency.h"
#include "kdistill/core/error.h"
#include "kdistill/core/system.h"

namespace kdistill::bench {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

torch::Tensor last_token(const torch::Tensor& logits) { return logits.select(1, logits.size(1) - 1).argmax(1, true); }

}  // namespace

GenerationStats measure_generation(Model& model, int64_t vocab_size, const GenerationOptions& o) {
  constexpr const char* fn = "measure_generation";
  check(model.defined(), fn, ": the model is empty");
  check(vocab_size >= 1 && o.batch() >= 1 && o.prompt() >= 1 && o.new_tokens() >= 1 && o.runs() >= 1, fn,
        ": vocab_size, batch, prompt, new_tokens and runs must be >= 1");
  if (o.threads() > 0) set_threads(o.threads());
  torch::NoGradGuard no_grad;
  TrainingModeGuard<Model> eval(model, false);
  const auto script = model.script();
  const bool incremental = script && script->find_method("step") && script->find_method("initial_state") &&
                           model.precision() == Precision::kFloat32;
  int64_t context = -1;
  if (script && script->find_method("context")) context = script->run_method("context").toInt();
  auto sync = [&] {
    if (o.device().is_cuda()) torch::cuda::synchronize();
  };
  // A generator of its own: measuring must not reseed the caller's global one.
  auto generator = at::detail::createCPUGenerator(o.seed());
  const auto prompt =
      torch::randint(0, vocab_size, {o.batch(), o.prompt()}, generator, torch::kLong).to(o.device());

  GenerationStats g;
  g.batch = o.batch();
  g.prompt = o.prompt();
  g.new_tokens = o.new_tokens();
  g.runs = o.runs();
  g.method = incremental ? "incremental" : "recompute";
  std::vector<double> prefill, decode, totals;
  for (int64_t run = 0; run <= o.runs(); ++run) {  // run 0 warms up
    std::vector<double> steps;
    const auto start = Clock::now();
    if (incremental) {
      auto t0 = Clock::now();
      auto out = script->run_method("step", prompt, script->run_method("initial_state", o.batch())).toTuple();
      auto next = last_token(out->elements()[0].toTensor());
      auto h = out->elements()[1].toTensor();
      sync();
      steps.push_back(ms_since(t0));
      for (int64_t i = 1; i < o.new_tokens(); ++i) {
        t0 = Clock::now();
        out = script->run_method("step", next, h).toTuple();
        next = last_token(out->elements()[0].toTensor());
        h = out->elements()[1].toTensor();
        sync();
        steps.push_back(ms_since(t0));
      }
    } else {
      auto seq = prompt;
      for (int64_t i = 0; i < o.new_tokens(); ++i) {
        const auto t0 = Clock::now();
        auto window = context > 0 && seq.size(1) > context ? seq.narrow(1, seq.size(1) - context, context) : seq;
        auto logits = model.forward(window);
        check(logits.dim() == 3 && logits.size(0) == o.batch(), fn, ": the model returned shape ", logits.sizes(),
              " for tokens ", window.sizes(), "; expected [B, L, V]");
        seq = torch::cat({seq, last_token(logits)}, 1);
        sync();
        steps.push_back(ms_since(t0));
      }
    }
    const double total = ms_since(start);
    if (run == 0) continue;
    prefill.push_back(steps.front());
    decode.insert(decode.end(), steps.begin() + 1, steps.end());
    totals.push_back(total);
  }
  g.prefill_p50_ms = quantile(prefill, 0.5);
  g.prefill_p99_ms = quantile(prefill, 0.99);
  if (!decode.empty()) {
    g.decode_p50_ms = quantile(decode, 0.5);
    g.decode_p99_ms = quantile(decode, 0.99);
  }
  g.tokens_per_s = static_cast<double>(o.batch() * o.new_tokens()) / (quantile(totals, 0.5) / 1000.0);
  return g;
}

}  // namespace kdistill::bench
