#pragma once

// Data-parallel gradient averaging: the ranks' gradients (each already weighted by its share of
// the global batch, see TrainStep::compute) are summed in flat buckets, together with each step's
// loss and terms, so that every rank takes the same decision on a non-finite loss.

#include <string>
#include <vector>

#include <torch/types.h>

#include "kdistill/train/distributed.h"
#include "train/step.h"

namespace kdistill::detail {

class GradientReducer {
 public:
  /// `params`: what the optimizer updates, in the same order on every rank. `term_names`: the
  /// objective's terms (a rank whose share of a batch is empty reports zeros for them).
  GradientReducer(ProcessGroup& group, std::vector<torch::Tensor> params, std::vector<std::string> term_names,
                  int64_t bucket_bytes = 25 << 20);

  /// Sums every rank's gradients into each rank's, and `outcome`'s loss and terms likewise.
  /// A gradient no micro-batch produced counts as zeros.
  void reduce(StepOutcome& outcome, int64_t step);

  /// Bytes one rank sends into the all-reduce per step (gradients and the loss values).
  int64_t bytes_per_step() const;
  /// Seconds spent in `reduce` so far (copies and the collectives).
  double seconds() const { return seconds_; }

 private:
  ProcessGroup& group_;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> term_names_;
  // Bucket b holds params [first_[b], first_[b + 1]) flattened, in order.
  std::vector<torch::Tensor> buckets_;
  std::vector<size_t> first_;
  double seconds_ = 0;
};

}  // namespace kdistill::detail
