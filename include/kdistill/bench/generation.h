#pragma once

#include <cstdint>
#include <string>

#include <torch/arg.h>
#include <torch/types.h>

#include "kdistill/models/model.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::bench {

/// Options for `measure_generation`.
struct GenerationOptions {
  /// Sequences generated at once.
  TORCH_ARG(int64_t, batch) = 1;
  /// Prompt tokens (drawn at random from the vocabulary, seeded).
  TORCH_ARG(int64_t, prompt) = 32;
  /// Tokens generated after the prompt, greedily (arg-max).
  TORCH_ARG(int64_t, new_tokens) = 64;
  /// Timed generations (after one untimed warm-up).
  TORCH_ARG(int64_t, runs) = 5;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// Intra-op threads; 0 leaves the setting alone.
  TORCH_ARG(int, threads) = 0;
};

/// Autoregressive generation latency. Times in milliseconds; p50 and p99 over all timed runs.
struct GenerationStats {
  int64_t batch = 0, prompt = 0, new_tokens = 0, runs = 0;
  /// "incremental": the model's `step(tokens, h)` from `initial_state(batch)` (one token per call
  /// after the prompt); "recompute": `forward` on the whole prefix for every new token (the
  /// prefix cropped to the model's `context()` when it has one). No KV cache is used.
  std::string method;
  double prefill_p50_ms = 0, prefill_p99_ms = 0;  ///< the prompt's forward, to the first new token
  double decode_p50_ms = 0, decode_p99_ms = 0;    ///< one later token (all per-token times pooled)
  double tokens_per_s = 0;  ///< new tokens of all sequences over the whole generation time (median run)
};

/// Generates `new_tokens` tokens after a random prompt, `runs` times, and times the prefill and
/// every decode step, in eval mode without gradients (CUDA synchronised per token). `vocab_size`
/// bounds the random prompt. Throws `kdistill::Error` for sizes < 1 or a model whose output is
/// not `[B, L, V]`.
///
/// Example:
/// ```
/// auto g = kdistill::bench::measure_generation(student, 256, kdistill::bench::GenerationOptions().batch(8));
/// std::cout << g.method << " " << g.tokens_per_s << " tokens/s\n";
/// ```
GenerationStats measure_generation(Model& model, int64_t vocab_size, const GenerationOptions& options = {});

}  // namespace kdistill::bench
#pragma GCC visibility pop
