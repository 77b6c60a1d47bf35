#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "kdistill/data/tensor_dataset.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::data {

/// Options for `token_windows` and `load_tokens_hdf5`.
struct TokenOptions {
  /// A token id that marks padding (never a target). The default -1 is a mark outside any
  /// vocabulary: -1 entries are left out, and fed to the model as id 0.
  TORCH_ARG(int64_t, pad_id) = -1;
  /// Vocabulary size V; 0 infers max(token) + 1.
  TORCH_ARG(int64_t, vocab_size) = 0;
};

/// Next-token training data from token sequences. The caller gives the tokens, never shifted
/// labels: row i of `tokens` (`[N, L + 1]`, any integer type) becomes the input `tokens[i, :L]`
/// and the targets `tokens[i, 1:]`, so the model's output at position t is scored against token
/// t + 1. A target position is left out (target -1) when that token is `pad_id`, or when `mask`
/// (`[N, L + 1]`, nonzero = counts; undefined = all count) is 0 there: use the mask for prompts,
/// whose tokens are read but never predicted. Left-out positions are left out everywhere: the
/// losses, the metrics and the agreement (see `select_tokens`). Input pads stay as they are (the
/// padding id must be a valid embedding row; a causal model never lets them reach an earlier
/// position).
///
/// The result is a `TensorDataset` with int64 features `[N, L]` and targets `[N, L]`, whose
/// `num_classes` is the vocabulary size. Throws `kdistill::Error` for fewer than 2 columns,
/// negative tokens (other than a negative `pad_id`), tokens outside the vocabulary, or a mask of
/// another shape.
///
/// Example:
/// ```
/// auto tokens = torch::tensor({{5, 6, 7, 0}, {5, 8, 0, 0}});   // 0 pads the second row
/// auto ds = kdistill::data::token_windows(tokens, {}, kdistill::data::TokenOptions().pad_id(0));
/// // inputs {{5,6,7},{5,8,0}}, targets {{6,7,-1},{8,-1,-1}}
/// ```
TensorDataset token_windows(const torch::Tensor& tokens, const torch::Tensor& mask = {}, TokenOptions options = {},
                            std::string name = "tokens");

/// Reads token sequences from HDF5: the integer dataset `tokens` (`[N, L + 1]`) and, when the
/// file has one, `mask` (same shape, nonzero = a target that counts), then `token_windows`. The
/// file's integer attributes `pad_id` and `vocab_size` are used when `options` leaves them unset.
/// Throws `kdistill::Error` naming the file and the dataset when either is missing or malformed.
///
/// Example:
/// ```
/// auto train = kdistill::data::load_tokens_hdf5("train_tokens.h5");
/// ```
TensorDataset load_tokens_hdf5(const std::string& path, TokenOptions options = {});

/// The bytes of a UTF-8 text file, or of every regular file under a directory (sorted by path;
/// symbolic links skipped),
/// as int64 tokens `[n]` in [0, 256): the byte-level tokenizer (vocabulary 256, no merges). Files
/// are joined with one '\n' between them. Throws `kdistill::Error` for a missing or unreadable
/// path, or when there is no byte at all.
torch::Tensor read_bytes(const std::string& path);
/// The same over a list of files, in the given order.
torch::Tensor read_bytes(const std::vector<std::string>& files);

/// Cuts a token stream `[n]` into `token_windows` of `length` + 1 tokens that overlap by one, so
/// that every token after the first is a target exactly once; a short tail is dropped. The
/// vocabulary is `vocab_size` (256: bytes), so that held-out text has the training text's. Throws
/// `kdistill::Error` when `length` < 1 or the stream is shorter than one window.
///
/// Example (byte-level text, 128 positions per window):
/// ```
/// auto train = kdistill::data::text_windows(kdistill::data::read_bytes("corpus.txt"), 128);
/// ```
TensorDataset text_windows(const torch::Tensor& stream, int64_t length, int64_t vocab_size = 256,
                           std::string name = "text");

}  // namespace kdistill::data
#pragma GCC visibility pop
