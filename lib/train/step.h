#pragma once

// One training step, written once: the trainer's loop calls it, and so can other drivers (data
// parallel, mixed precision) between their own hooks.

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "kdistill/core/precision.h"
#include "kdistill/data/batch_iterator.h"
#include "kdistill/losses/objective.h"
#include "kdistill/losses/tokens.h"
#include "kdistill/models/model.h"
#include "kdistill/teachers/teacher.h"

namespace kdistill::detail {

/// What one step computed.
struct StepOutcome {
  double loss = 0;                                    ///< the weighted sum of the terms
  std::vector<std::pair<std::string, double>> terms;  ///< each term's (unweighted) value
  bool finite = true;                                 ///< loss is neither NaN nor infinite
};

class TrainStep {
 public:
  /// `params` are what the optimizer updates (student and objective parameters). With
  /// `student_precision` bf16 the student's forward runs under bf16 autocast on `device`.
  TrainStep(Model& student, Teacher* teacher, Objective& objective, std::vector<torch::Tensor> params,
            Precision student_precision = Precision::kFloat32, torch::Device device = torch::kCPU);

  /// Gradient accumulation: each batch runs as `k` micro-batches of consecutive rows (at most one
  /// per row), and sequence losses are reduced with `reduction` (see `TokenReduction`).
  void set_accumulation(int64_t k, TokenReduction reduction);

  /// `hook` runs just before the backward of each step's last micro-batch that counts (the data
  /// parallel reducer arms itself there: what that backward accumulates is final).
  void set_before_last_backward(std::function<void()> hook) { before_last_backward_ = std::move(hook); }

  /// Forward (student with the objective's taps, teacher), the objective's terms, their weighted
  /// sum, and backward into zeroed gradients, one micro-batch at a time. Micro-batch i's loss is
  /// weighted by n_i / D: rows over the batch's rows for per-sample data; for sequences its
  /// counted tokens over the batch's (mean) or over the batch's sequences (sequence_sum). The
  /// gradient is therefore that of the whole batch, whatever k. Nothing is updated yet.
  /// `denominator` > 0 replaces D: a data-parallel rank passes the global batch's, so that the
  /// ranks' summed gradients are the global batch's. A batch of no rows computes nothing.
  StepOutcome compute(const data::Batch& batch, const TrainProgress& progress, bool all_labelled,
                      double denominator = 0);

  /// D for `batch`: its rows, or for sequences its counted tokens (mean) or its sequences
  /// (sequence_sum).
  double denominator(const torch::Tensor& targets) const;

  /// Clips the gradients' global norm to `clip_norm` (0: no clipping) and steps the optimizer.
  void apply(torch::optim::Optimizer& optimizer, double clip_norm);

  const std::vector<torch::Tensor>& params() const { return params_; }

 private:
  Model& student_;
  Teacher* teacher_;
  Objective& objective_;
  std::vector<torch::Tensor> params_;
  std::vector<std::string> student_features_, teacher_features_;
  Precision precision_;
  torch::Device device_;
  int64_t micro_batches_ = 1;
  TokenReduction reduction_ = TokenReduction::kMean;
  std::function<void()> before_last_backward_;

  // One micro-batch's terms (token rows for sequences) and their weighted sum.
  std::vector<LossTerm> terms_of(const data::Batch& part, const TrainProgress& progress, bool all_labelled,
                                 torch::Tensor& loss);
};

}  // namespace kdistill::detail
