#pragma once

// One training step, written once: the trainer's loop calls it, and so can other drivers (data
// parallel, mixed precision) between their own hooks.

#include <string>
#include <utility>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include "kdistill/core/precision.h"
#include "kdistill/data/batch_iterator.h"
#include "kdistill/losses/objective.h"
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

  /// Forward (student with the objective's taps, teacher), the objective's terms, their weighted
  /// sum, and backward into zeroed gradients. Nothing is updated yet.
  StepOutcome compute(const data::Batch& batch, const TrainProgress& progress, bool all_labelled);

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
};

}  // namespace kdistill::detail
