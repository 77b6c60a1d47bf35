#include "kdistill/data/batch_iterator.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill::data {

uint64_t mix_seed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

BatchIterator::BatchIterator(const TensorDataset& dataset, BatchOptions options, int64_t epoch)
    : dataset_(dataset), options_(std::move(options)) {
  const int64_t n = dataset.size();
  const int64_t b = options_.batch_size();
  check(n > 0, "BatchIterator: the data set '", dataset.name(), "' is empty");
  check(b >= 1 && b <= n, "BatchIterator: batch_size must be in [1, ", n, "] (the data set size), got ", b);
  check(epoch >= 0, "BatchIterator: epoch must be >= 0, got ", epoch);
  num_batches_ = options_.drop_last() ? n / b : (n + b - 1) / b;
  check(options_.block_rows() >= 0 && options_.window_blocks() >= 1, "BatchIterator: block_rows must be >= 0 and "
        "window_blocks >= 1, got ", options_.block_rows(), " and ", options_.window_blocks());
  if (!options_.shuffle()) return;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(options_.seed(), static_cast<uint64_t>(epoch)));
  const auto longs = torch::TensorOptions().dtype(torch::kLong);
  const int64_t rows = options_.block_rows();
  if (rows == 0 || rows >= n) {
    order_ = torch::randperm(n, gen, longs);
    return;
  }
  // Blocks in a random order, then the rows of each window of blocks shuffled among themselves.
  const int64_t blocks = (n + rows - 1) / rows;
  auto block_order = torch::randperm(blocks, gen, longs);
  const auto* bo = block_order.data_ptr<int64_t>();
  std::vector<torch::Tensor> windows;
  for (int64_t w = 0; w < blocks; w += options_.window_blocks()) {
    std::vector<torch::Tensor> members;
    for (int64_t j = w; j < std::min(blocks, w + options_.window_blocks()); ++j) {
      members.push_back(torch::arange(bo[j] * rows, std::min(n, (bo[j] + 1) * rows), longs));
    }
    auto window = torch::cat(members);
    windows.push_back(window.index_select(0, torch::randperm(window.size(0), gen, longs)));
  }
  order_ = torch::cat(windows);
}

Batch BatchIterator::batch(int64_t i) const { return batch(i, 0, 1); }

std::pair<int64_t, int64_t> BatchIterator::span(int64_t i, int64_t part, int64_t parts) const {
  check(i >= 0 && i < num_batches_, "BatchIterator::batch: index ", i, " is outside [0, ", num_batches_, ")");
  check(parts >= 1 && part >= 0 && part < parts, "BatchIterator::batch: part ", part, " is outside [0, ", parts, ")");
  const int64_t b = options_.batch_size();
  const int64_t len = std::min(b, dataset_.size() - i * b);
  return {i * b + part * len / parts, i * b + (part + 1) * len / parts};
}

torch::Tensor BatchIterator::indices(int64_t i) const { return indices(i, 0, 1); }

torch::Tensor BatchIterator::indices(int64_t i, int64_t part, int64_t parts) const {
  const auto [start, end] = span(i, part, parts);
  return order_.defined() ? order_.narrow(0, start, end - start) : torch::arange(start, end, torch::kLong);
}

Batch BatchIterator::batch(int64_t i, int64_t part, int64_t parts) const {
  const auto [start, end] = span(i, part, parts);
  const int64_t len = end - start;
  const auto& device = options_.device();
  Batch out;
  if (order_.defined()) {
    out.indices = order_.narrow(0, start, len);
    const auto& f = dataset_.features();
    auto idx = f.device() == out.indices.device() ? out.indices : out.indices.to(f.device());
    out.inputs = f.index_select(0, idx);
    out.targets = dataset_.targets().index_select(0, idx);
  } else {
    out.indices = torch::arange(start, start + len, torch::kLong);
    out.inputs = dataset_.features().narrow(0, start, len);
    out.targets = dataset_.targets().narrow(0, start, len);
  }
  if (out.inputs.device() != device) {
    out.inputs = out.inputs.to(device, /*non_blocking=*/true);
    out.targets = out.targets.to(device, /*non_blocking=*/true);
  }
  return out;
}

}  // namespace kdistill::data
