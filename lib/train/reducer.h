#pragma once

// Data-parallel gradient averaging: the ranks' gradients (each already weighted by its share of
// the global batch, see TrainStep::compute) are summed in flat buckets, together with each step's
// loss and terms, so that every rank takes the same decision on a non-finite loss.
//
// The buckets overlap with backward. They hold the parameters in reverse order (backward reaches
// the last layers first), and a hook on each parameter's gradient accumulator copies its gradient
// into its bucket once the step's last backward has accumulated it. A bucket whose gradients are
// all in starts its all-reduce at once, while backward computes the earlier layers; buckets start
// in their fixed order, so that every rank issues the same collectives in the same order.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "kdistill/train/distributed.h"
#include "train/step.h"

namespace torch::autograd {
struct Node;
}

namespace kdistill::detail {

class GradientReducer {
 public:
  /// `params`: what the optimizer updates, in the same order on every rank. `term_names`: the
  /// objective's terms (a rank whose share of a batch is empty reports zeros for them).
  /// `bucket_bytes`: the size a bucket fills to before the next begins.
  GradientReducer(ProcessGroup& group, std::vector<torch::Tensor> params, std::vector<std::string> term_names,
                  int64_t bucket_bytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// Call just before the step's last backward (`TrainStep::set_before_last_backward`): from then
  /// on a gradient that backward accumulates is final, and full buckets start their all-reduce.
  /// `step` (1-based) names the collectives in errors.
  void arm(int64_t step);

  /// Starts what backward has not (a gradient no backward produced counts as zeros), sums the
  /// loss and the terms into `outcome`, waits, and leaves every rank's summed gradients in each
  /// rank's parameters. Without `arm` it all starts here.
  void reduce(StepOutcome& outcome, int64_t step);

  /// Bytes one rank sends into the all-reduce per step (gradients and the loss values).
  int64_t bytes_per_step() const;
  /// Seconds this rank spent on the all-reduce so far, outside the collectives' own threads:
  /// copies into and out of the buckets, starting them, and waiting for them.
  double seconds() const { return seconds_; }
  /// The number of gradient buckets.
  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  /// Buckets that started during backward, summed over the steps reduced so far.
  int64_t started_in_backward() const { return started_in_backward_; }

 private:
  struct Hook;
  void clear();              // a new step: no gradient in, no bucket started
  void ready(size_t param);  // backward has accumulated `param`'s gradient
  void fill(size_t param);   // copies its gradient (or zeros) into its bucket
  void start(size_t bucket);

  ProcessGroup& group_;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> term_names_;
  // Bucket b holds the parameters members_[b], flattened in that order at offset_[param].
  std::vector<torch::Tensor> buckets_;
  std::vector<std::vector<size_t>> members_;
  std::vector<size_t> bucket_of_;
  std::vector<int64_t> offset_;
  // This step: which gradients are in, how many each bucket still lacks, the next bucket to start.
  std::vector<char> filled_;
  std::vector<size_t> missing_;
  size_t next_ = 0;
  bool armed_ = false;
  int64_t step_ = 0;
  std::vector<ProcessGroup::Pending> pending_;
  // The hooks, on accumulators held here (a parameter keeps only a weak reference to its own).
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;
  std::vector<uintptr_t> hook_keys_;
  double seconds_ = 0;
  int64_t started_in_backward_ = 0;
};

}  // namespace kdistill::detail
