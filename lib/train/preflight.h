#pragma once

// Checks made before any training: the options, the data, and one probe batch through both models
// and the objective, so that a wrong shape, a missing tap or an objective that needs what the run
// lacks is refused before the first step.

#include <torch/types.h>

#include "kdistill/train/trainer.h"

namespace kdistill::detail {

/// Throws `kdistill::Error` naming the first invalid field of `options`.
void validate_options(const TrainerOptions& options);

/// Checks `train` (and `eval`) against the student, the teacher and the objective: sizes, finite
/// features, label and teacher needs, a teacher's row count, and a probe of two samples through
/// the student's and teacher's forward (with the taps the objective asks for) and the objective.
/// Leaves the student's training mode as it was. Returns the names of the objective's terms on the
/// probe batch, comma-separated (what a checkpoint records of the objective).
std::string preflight(Model& student, Teacher* teacher, Objective& objective, const data::TensorDataset& train,
               const data::TensorDataset* eval, int64_t batch_size, const torch::Device& device);

}  // namespace kdistill::detail
