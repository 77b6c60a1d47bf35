#pragma once

#include <cstdint>

#include <torch/arg.h>

#include "kdistill/models/model.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// Options for `transformer_lm`.
struct TransformerLMOptions {
  TransformerLMOptions(int64_t vocab_size, int64_t context) : vocab_size_(vocab_size), context_(context) {}
  /// Vocabulary size V (256 for bytes).
  TORCH_ARG(int64_t, vocab_size);
  /// The longest input it takes: the number of learned positions.
  TORCH_ARG(int64_t, context);
  /// Model width; a multiple of `heads`.
  TORCH_ARG(int64_t, dim) = 128;
  TORCH_ARG(int64_t, layers) = 2;
  TORCH_ARG(int64_t, heads) = 4;
  /// Hidden width of each block's MLP, as a multiple of `dim`.
  TORCH_ARG(int64_t, mlp_ratio) = 4;
  /// Dropout after attention and MLP (training mode only).
  TORCH_ARG(double, dropout) = 0.0;
};

/// A causal decoder-only transformer language model, built as a TorchScript module: tokens
/// `[B, L]` (int64, L <= context) to next-token logits `[B, L, V]`.
///
///   x = E[tokens] + P[0..L)                                 learned token and position embeddings
///   per block:  x += W_o attn(LN(x))    x += W_2 gelu(W_1 LN(x))   (pre-norm, causal attention)
///   logits = W_head LN(x) + b
///
/// Weights are drawn from LibTorch's generator (seed it with `torch::manual_seed`): N(0, 0.02)
/// for embeddings and linear layers, output projections scaled by 1/sqrt(2 layers) as in GPT-2.
/// Because it is TorchScript, `Model::save` writes a file that Python's `torch.jit.load` reads,
/// and it trains in C++ like any TorchScript model. Its method `context()` returns the number of
/// positions. It has no KV cache: generation recomputes the prefix (`bench::measure_generation`).
/// Throws `kdistill::Error` for sizes < 1 or a width that the heads do not divide.
///
/// Example:
/// ```
/// auto teacher = kdistill::transformer_lm(kdistill::TransformerLMOptions(256, 128).dim(192).layers(4).heads(6));
/// auto logits = teacher.forward(torch::randint(0, 256, {8, 128}));   // [8, 128, 256]
/// ```
Model transformer_lm(const TransformerLMOptions& options);

/// Options for `gru_lm`.
struct GRULMOptions {
  explicit GRULMOptions(int64_t vocab_size) : vocab_size_(vocab_size) {}
  TORCH_ARG(int64_t, vocab_size);
  /// Embedding width and hidden state width.
  TORCH_ARG(int64_t, hidden) = 256;
  TORCH_ARG(int64_t, layers) = 1;
};

/// A GRU language model as a TorchScript module: tokens `[B, L]` to logits `[B, L, V]`
/// (embedding, `layers` GRU layers, a linear head). Any length works. Besides `forward` it has
/// `initial_state(batch) -> h` and `step(tokens, h) -> (logits, h)`, so generation decodes one
/// token at a time from its state instead of re-reading the prefix. Weights: U(-1/sqrt(H),
/// 1/sqrt(H)) as `torch.nn.GRU`, N(0, 0.02) embeddings. Saved files load in Python.
///
/// Example:
/// ```
/// auto student = kdistill::gru_lm(kdistill::GRULMOptions(256).hidden(128));
/// ```
Model gru_lm(const GRULMOptions& options);

}  // namespace kdistill
#pragma GCC visibility pop
