#pragma once

#include <cstdint>
#include <utility>

#include <torch/arg.h>
#include <torch/types.h>

#include "kdistill/data/tensor_dataset.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::data {

/// One mini-batch: inputs, targets (-1 = unlabelled) and the samples' row indices in the data set.
struct Batch {
  torch::Tensor inputs;
  torch::Tensor targets;
  torch::Tensor indices;  ///< int64 `[B]`, on the CPU: which rows of the data set these are
};

/// Options for `BatchIterator`.
struct BatchOptions {
  /// Samples per batch; must be in [1, N].
  TORCH_ARG(int64_t, batch_size) = 128;
  /// Shuffle the order each epoch (seeded: the same seed and epoch give the same order).
  TORCH_ARG(bool, shuffle) = true;
  /// Drop a final batch smaller than `batch_size`.
  TORCH_ARG(bool, drop_last) = false;
  /// Seed of the shuffle; the order of epoch e depends on (seed, e) only.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Device the batches are placed on.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// With shuffling: 0 shuffles every row. B > 0 shuffles for data read from disk in blocks of B
  /// consecutive rows (a streamed teacher cache): the blocks are put in a random order, then the
  /// rows of each run of `window_blocks` consecutive blocks of that order are shuffled among
  /// themselves, so each block is read once per epoch and few blocks are live at a time. Seeded
  /// like the full shuffle.
  TORCH_ARG(int64_t, block_rows) = 0;
  /// Blocks whose rows are mixed together when `block_rows` > 0.
  TORCH_ARG(int64_t, window_blocks) = 16;
};

/// Slices a `TensorDataset` into mini-batches of one epoch.
///
/// Batches are gathered whole (one `index_select` per batch, no per-sample work) and are
/// random-access, so a resumed run can start in the middle of an epoch. The order depends only
/// on (seed, epoch): no hidden generator state to save.
///
/// The iterator keeps a reference to `dataset`, which must outlive it.
///
/// Example:
/// ```
/// kdistill::data::BatchIterator it(train, kdistill::data::BatchOptions().batch_size(128).seed(1), epoch);
/// for (int64_t i = 0; i < it.num_batches(); ++i) { auto b = it.batch(i); /* b.inputs, b.targets */ }
/// ```
class BatchIterator {
 public:
  BatchIterator(const TensorDataset& dataset, BatchOptions options, int64_t epoch = 0);
  /// Number of batches in this epoch.
  int64_t num_batches() const { return num_batches_; }
  /// Batch `i` of this epoch, `i` in [0, num_batches()).
  Batch batch(int64_t i) const;
  /// Part `part` of `parts` of batch `i`: its rows [part * n / parts, (part + 1) * n / parts),
  /// n being the batch's size. Data-parallel rank r of W takes `batch(i, r, W)`: the ranks share
  /// one seeded order and split each batch between them, so that together they run batch i.
  Batch batch(int64_t i, int64_t part, int64_t parts) const;
  /// The data-set rows of batch `i` (int64 `[n]`, on the CPU), without gathering them.
  torch::Tensor indices(int64_t i) const;
  /// The rows of part `part` of `parts` of batch `i` (see `batch(i, part, parts)`).
  torch::Tensor indices(int64_t i, int64_t part, int64_t parts) const;

 private:
  std::pair<int64_t, int64_t> span(int64_t i, int64_t part, int64_t parts) const;

  const TensorDataset& dataset_;
  BatchOptions options_;
  torch::Tensor order_;  // int64 [N] permutation, undefined when not shuffling
  int64_t num_batches_ = 0;
};

/// The 64-bit seed for (seed, stream): distinct streams give well-separated seeds (splitmix64).
uint64_t mix_seed(uint64_t seed, uint64_t stream);

}  // namespace kdistill::data
#pragma GCC visibility pop
