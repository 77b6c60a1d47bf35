#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "kdistill/core/precision.h"
#include "kdistill/data/tensor_dataset.h"
#include "kdistill/losses/kd_loss.h"
#include "kdistill/losses/objective.h"
#include "kdistill/losses/tokens.h"
#include "kdistill/metrics/evaluate.h"
#include "kdistill/metrics/metrics.h"
#include "kdistill/models/model.h"
#include "kdistill/teachers/teacher.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

class ProcessGroup;  // kdistill/train/distributed.h

/// The precisions of a run: the teacher's forward, and the student's compute.
///
/// Example:
/// ```
/// auto p = kdistill::PrecisionOptions().teacher(kdistill::Precision::kBFloat16);
/// ```
struct PrecisionOptions {
  /// bf16: the teacher computes in bfloat16 (see `Teacher::set_precision`); its logits reach the
  /// objectives in float32.
  TORCH_ARG(Precision, teacher) = Precision::kFloat32;
  /// bf16: the student's forward runs under bf16 autocast on float32 master weights; losses and
  /// softmaxes run in float32; checkpoints and saved students stay float32.
  TORCH_ARG(Precision, student) = Precision::kFloat32;
};

/// Options for `DistillTrainer`. Every field has a default; set the ones you need.
///
/// Example:
/// ```
/// auto opts = kdistill::TrainerOptions().epochs(5).lr(0.05).schedule("cosine").seed(1)
///                 .loss(kdistill::KDLossOptions().temperature(4).alpha(0.9)).output_dir("runs/a");
/// ```
struct TrainerOptions {
  /// Passes over the training set.
  TORCH_ARG(int64_t, epochs) = 10;
  /// If > 0, stop after this many optimizer steps (the schedule spans them), even mid-epoch.
  TORCH_ARG(int64_t, max_steps) = 0;
  /// Samples (sequences) per optimizer step. With a process group this is the global batch: each
  /// of the W ranks runs about batch_size / W of it, so the student trained does not depend on
  /// the number of processes (up to float rounding).
  TORCH_ARG(int64_t, batch_size) = 128;
  /// Gradient accumulation: each batch runs forward and backward as this many micro-batches of
  /// consecutive rows (less memory), then one optimizer step. The gradient is the whole batch's,
  /// up to float rounding: each micro-batch's loss is weighted by its share of the batch's rows,
  /// or for sequences of its counted tokens (see `TokenReduction`), never by 1 / k.
  TORCH_ARG(int64_t, micro_batches) = 1;
  /// Sequence data (`[N, L]` targets): how per-token losses are reduced, "mean" over real tokens
  /// or "sequence_sum". Ignored for per-sample data.
  TORCH_ARG(TokenReduction, token_reduction) = TokenReduction::kMean;
  /// "sgd", "adam" or "adamw".
  TORCH_ARG(std::string, optimizer) = "sgd";
  /// Peak learning rate.
  TORCH_ARG(double, lr) = 0.05;
  /// SGD momentum (0 disables it).
  TORCH_ARG(double, momentum) = 0.9;
  /// Nesterov momentum for SGD.
  TORCH_ARG(bool, nesterov) = false;
  /// L2 penalty (SGD, Adam) or decoupled weight decay (AdamW).
  TORCH_ARG(double, weight_decay) = 0.0;
  /// Learning-rate schedule after warm-up: "constant", "step" or "cosine" (to 0 at the last step).
  TORCH_ARG(std::string, schedule) = "constant";
  /// Linear warm-up from lr/warmup_steps to lr over this many steps.
  TORCH_ARG(int64_t, warmup_steps) = 0;
  /// "step" schedule: multiply the rate by `gamma` every `step_size` steps (0: every epoch).
  TORCH_ARG(int64_t, step_size) = 0;
  TORCH_ARG(double, gamma) = 0.1;
  /// Clip the global gradient norm to this value; 0 disables clipping.
  TORCH_ARG(double, grad_clip_norm) = 0.0;
  /// Seeds the shuffle and LibTorch's generator (dropout): same seed, same threads, same result.
  TORCH_ARG(uint64_t, seed) = 0;
  /// "cpu", "cuda" or "cuda:N".
  TORCH_ARG(std::string, device) = "cpu";
  /// Intra-op threads; 0 leaves LibTorch's setting alone.
  TORCH_ARG(int, threads) = 0;
  /// The distillation loss when no `objective` is given: `KDObjective(loss)` with a teacher,
  /// label cross-entropy without one (the baseline).
  TORCH_ARG(KDLossOptions, loss) = {};
  /// The objective (named, weighted loss terms; see `Objective`). Null: built from `loss`.
  TORCH_ARG(std::shared_ptr<Objective>, objective) = nullptr;
  /// Teacher and student precision (bf16 on CPUs with AVX512-BF16 or AMX, and on CUDA).
  TORCH_ARG(PrecisionOptions, precision) = {};
  /// Where checkpoints and metrics.jsonl go; empty writes no files.
  TORCH_ARG(std::string, output_dir) = "";
  /// Write a checkpoint every N steps (0: only at the end of each epoch). Needs `output_dir`.
  TORCH_ARG(int64_t, checkpoint_every) = 0;
  /// Append a step line to metrics.jsonl every N steps (0: epoch lines only).
  TORCH_ARG(int64_t, log_every) = 100;
  /// Batch size for evaluation passes (256: at 1000 images a CNN's activations fall out of cache, and
  /// the demo's 825k-parameter CNN teacher scored several times slower on 2 threads).
  TORCH_ARG(int64_t, eval_batch_size) = 256;
  /// Show a progress bar when stderr is a terminal (plain log lines otherwise).
  TORCH_ARG(bool, progress) = true;
  /// Data-parallel training (see `ProcessGroup`); null: this process alone. The ranks share one
  /// seeded order and split every batch; the student's and the objective's parameters are
  /// broadcast from rank 0 at the start; gradients, losses and the evaluation are reduced over
  /// the ranks. Only rank 0 writes checkpoints and metrics.jsonl; every rank reads the checkpoint
  /// it resumes from, and may have a different world size from the run that wrote it.
  TORCH_ARG(std::shared_ptr<ProcessGroup>, process_group) = nullptr;
  /// Data-parallel gradient buckets fill to this many MiB, last layers first. A full bucket's
  /// all-reduce starts during backward, while the earlier layers' gradients are computed; smaller
  /// buckets start sooner but cost one collective each (docs/distributed.md, "Measured").
  TORCH_ARG(double, bucket_mb) = 1.0;
  /// What a non-finite loss does: "stop" (throw, naming the step; the last checkpoint stays) or
  /// "skip" (drop that step's update and go on).
  TORCH_ARG(std::string, on_nonfinite) = "stop";
};

/// What a step callback sees.
struct StepInfo {
  int64_t epoch = 0;  ///< 0-based epoch
  int64_t step = 0;   ///< optimizer steps done so far, this one included
  int64_t batch = 0;  ///< batch index within the epoch
  double loss = 0;
  double lr = 0;
  std::map<std::string, double> terms;  ///< each loss term's value (unweighted), by name
};

/// Metrics at the end of an epoch.
struct EpochMetrics {
  int64_t epoch = 0;         ///< 0-based
  int64_t step = 0;          ///< steps done at the end of this epoch
  double train_loss = 0;     ///< mean loss over the epoch's steps (this process's)
  std::map<std::string, double> terms;  ///< each loss term's mean over the epoch's steps
  double lr = 0;             ///< learning rate of the last step
  double samples_per_s = 0;  ///< training throughput over the epoch, evaluation excluded
  metrics::Evaluation eval;  ///< on the evaluation set (samples == 0 when none was given)
};

/// What data-parallel training cost, per optimizer step (one process: world_size 1, zeros).
struct DistributedStats {
  int64_t world_size = 1;
  std::string backend;                 ///< "gloo" or "nccl"; empty for one process
  int64_t allreduce_bytes_per_step = 0;  ///< what each rank sends into the gradient all-reduce
  double allreduce_s_per_step = 0;     ///< seconds in the all-reduce (copies, starts, waits), mean per step
  int64_t allreduce_buckets = 0;       ///< gradient buckets (one collective each, per step)
  double buckets_in_backward = 0;      ///< the share of buckets that started during backward
  double step_s = 0;                   ///< seconds per step, all-reduce included, mean
};

/// The outcome of `DistillTrainer::fit`.
struct TrainResult {
  std::vector<EpochMetrics> epochs;  ///< epochs run by this call
  metrics::Evaluation final_eval;    ///< last evaluation of the student
  double teacher_accuracy = -1;      ///< teacher on the evaluation set; -1 if not measured
  double train_samples_per_s = 0;    ///< over all training steps of this call
  int64_t steps = 0;                 ///< total steps done (resumed ones included)
  int64_t resumed_from_step = -1;    ///< the checkpoint's step, or -1 for a fresh run
  DistributedStats distributed;      ///< data-parallel cost (see `TrainerOptions::process_group`)
};

/// Trains a student on a teacher's softened outputs (or, with no teacher, on labels alone: the
/// baseline, trained by the same code with the same seed and budget).
///
/// Per step: batch → student logits and the features the objective taps → teacher outputs (live
/// model, or a cache by sample index) → the objective's named terms → their weighted sum →
/// backward → optional clipping → optimizer step (student and objective parameters). Per epoch:
/// evaluation (accuracy, NLL, ECE, agreement with the teacher), a metrics.jsonl line with each
/// term's mean, and an atomic checkpoint (student, objective parameters, optimizer, RNG). A run
/// killed at any point and resumed with `resume()` ends with bitwise the same student weights on
/// the CPU as an uninterrupted run (same seed and thread count).
///
/// Example:
/// ```
/// kdistill::DistillTrainer trainer(student, teacher, kdistill::TrainerOptions().epochs(4).seed(0));
/// auto result = trainer.fit(train, &test);
/// ```
class DistillTrainer {
 public:
  /// `teacher` may be null: the student then learns from labels alone.
  DistillTrainer(Model student, std::shared_ptr<Teacher> teacher, TrainerOptions options = {});

  /// Called after every optimizer step.
  void on_step(std::function<void(const StepInfo&)> callback);
  /// Called after every epoch's evaluation.
  void on_epoch(std::function<void(const EpochMetrics&)> callback);

  /// Loads `path`, or `output_dir/checkpoints/last.pt` when empty, so that `fit` continues from
  /// it. Returns false when there is no checkpoint to resume (a fresh run). A corrupt or
  /// mismatched checkpoint throws `kdistill::Error` and changes nothing.
  bool resume(const std::string& path = "");

  /// Trains on `train`, evaluating on `eval` (if given) after every epoch.
  TrainResult fit(const data::TensorDataset& train, const data::TensorDataset* eval = nullptr);

  /// Writes a checkpoint (student, optimizer, progress, RNG state) atomically to `path`.
  void save_checkpoint(const std::string& path) const;

  /// The student being trained.
  Model& student() { return student_; }
  /// The objective being minimised (the one given in the options, or the one built from `loss`).
  Objective& objective() { return *objective_; }
  const TrainerOptions& options() const { return options_; }

 private:
  struct State;
  void write_checkpoint_file(const std::string& path, const torch::Tensor& rank_rng) const;

  Model student_;
  std::shared_ptr<Teacher> teacher_;
  TrainerOptions options_;
  std::shared_ptr<Objective> objective_;
  std::shared_ptr<State> state_;
};

}  // namespace kdistill
#pragma GCC visibility pop
