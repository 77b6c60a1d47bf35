#pragma once

// Training checkpoints: the student's and the objective's parameters and buffers, the optimizer,
// the position in the run and the RNG, in a self-checking file (checked_file.h). Reading parses
// everything into a `Checkpoint` first, so that a bad file throws before anything is changed.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "kdistill/losses/objective.h"
#include "kdistill/models/model.h"

namespace kdistill::detail {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// A checkpoint as read from disk.
struct Checkpoint {
  std::string path;
  /// step, epoch, batch (the next batch to run), seed, batch_size, train_size, steps_per_epoch, threads.
  std::map<std::string, int64_t> meta;
  NamedTensors params, buffers;                      ///< the student's
  NamedTensors objective_params, objective_buffers;  ///< the objective's (empty in files from before objectives)
  std::string optimizer;                             ///< a serialized optimizer archive
  std::string objective_terms;                       ///< the objective's term names; empty in older files
  torch::Tensor rng;                                 ///< LibTorch's CPU generator state
  torch::Tensor rank_rng;  ///< data-parallel runs: every rank's generator state, `[world_size, S]`; else undefined
};

/// The objective's parameters and buffers by name, in a stable order.
NamedTensors named_parameters(const Objective& objective);
NamedTensors named_buffers(const Objective& objective);

/// Writes a checkpoint atomically to `path`.
void write_checkpoint(const std::string& path, const std::map<std::string, int64_t>& meta, const Model& student,
                      const Objective& objective, const std::string& optimizer_bytes,
                      const std::string& objective_terms, const torch::Tensor& rank_rng = {});

/// Reads and parses `path`; throws `kdistill::Error` naming the file when it is corrupt, truncated,
/// of another format or lacks a field.
Checkpoint read_checkpoint(const std::string& path);

/// The one compatibility check between a checkpoint and the run resuming it: every parameter and
/// buffer of the student and of the objective by name, shape and dtype, and each field of `run`
/// (seed, batch_size, train_size, steps_per_epoch: those the run knows so far) by value. Throws
/// `kdistill::Error` naming the checkpoint and what differs.
void check_compatible(const Checkpoint& ckpt, const Model& student, const Objective& objective,
                      const std::map<std::string, int64_t>& run);

/// Copies the checkpoint's tensors into the student and the objective (call after
/// `check_compatible`).
void restore_tensors(const Checkpoint& ckpt, const Model& student, const Objective& objective);

}  // namespace kdistill::detail
