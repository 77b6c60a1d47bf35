#include "kdistill/data/tensor_dataset.h"

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill::data {

TensorDataset::TensorDataset(torch::Tensor features, torch::Tensor targets, int64_t num_classes, std::string name)
    : name_(std::move(name)) {
  constexpr const char* fn = "TensorDataset";
  check(features.defined() && features.dim() >= 1, fn, ": features must have a sample dimension, got ",
        features.defined() ? features.sizes() : torch::IntArrayRef{});
  check(targets.defined() && (targets.dim() == 1 || targets.dim() == 2), fn,
        ": targets must be [N] (one per sample) or [N, L] (one per position), got shape ",
        targets.defined() ? targets.sizes() : torch::IntArrayRef{});
  check(!targets.is_floating_point() && targets.scalar_type() != torch::kBool, fn,
        ": targets must be integers, got ", targets.scalar_type());
  check(features.size(0) == targets.size(0), fn, ": features has ", features.size(0), " samples but targets has ",
        targets.size(0));
  check(num_classes >= 0, fn, ": num_classes must be >= 0, got ", num_classes);
  targets_ = targets.to(torch::kLong).contiguous();
  features_ = features.contiguous();
  if (targets_.numel() > 0) {
    const auto lo = targets_.min().item<int64_t>();
    const auto hi = targets_.max().item<int64_t>();
    check(lo >= -1, fn, ": label ", lo, " is negative (only -1, \"no label\", is allowed)");
    if (num_classes == 0) num_classes = hi + 1;
    check(hi < num_classes, fn, ": label ", hi, " is outside [0, ", num_classes, ")");
  }
  num_classes_ = num_classes;
}

std::vector<int64_t> TensorDataset::sample_shape() const {
  auto s = features_.sizes().vec();
  s.erase(s.begin());
  return s;
}

int64_t TensorDataset::num_labelled() const { return (targets_ >= 0).sum().item<int64_t>(); }

TensorDataset TensorDataset::slice(int64_t begin, int64_t end) const {
  check(0 <= begin && begin <= end && end <= size(), "TensorDataset::slice: range [", begin, ", ", end,
        ") is outside [0, ", size(), "]");
  return TensorDataset(features_.narrow(0, begin, end - begin), targets_.narrow(0, begin, end - begin),
                       num_classes_, name_);
}

TensorDataset TensorDataset::with_label_budget(int64_t n) const {
  check(n >= 0, "TensorDataset::with_label_budget: n must be >= 0, got ", n);
  auto t = targets_.clone();
  if (n < size()) t.narrow(0, n, size() - n).fill_(-1);
  return TensorDataset(features_, t, num_classes_, name_);
}

TensorDataset TensorDataset::labelled_only() const {
  auto labelled = targets_ >= 0;
  if (labelled.dim() == 2) labelled = labelled.any(1);
  auto idx = labelled.nonzero().squeeze(1);
  return TensorDataset(features_.index_select(0, idx.to(features_.device())), targets_.index_select(0, idx),
                       num_classes_, name_);
}

TensorDataset TensorDataset::to(const torch::Device& device) const {
  return TensorDataset(features_.to(device), targets_.to(device), num_classes_, name_);
}

torch::Tensor map_batches(const TensorDataset& dataset, int64_t batch_size,
                          const std::function<torch::Tensor(const torch::Tensor& features, int64_t begin)>& fn) {
  check(batch_size >= 1, "map_batches: batch_size must be >= 1, got ", batch_size);
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < dataset.size(); i += batch_size) {
    const int64_t len = std::min(batch_size, dataset.size() - i);
    auto out = fn(dataset.features().narrow(0, i, len), i);
    check(out.defined() && out.dim() >= 1 && out.size(0) == len, "map_batches: a batch of ", len, " rows gave ",
          out.defined() ? out.sizes() : torch::IntArrayRef{}, out.defined() ? "" : " (undefined)");
    parts.push_back(std::move(out));
  }
  return parts.empty() ? torch::Tensor() : torch::cat(parts);
}

}  // namespace kdistill::data
