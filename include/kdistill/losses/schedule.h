#pragma once

#include <cstdint>
#include <string>

#include <torch/arg.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// Where training stands when a step runs (for objectives and schedules that change over a run).
struct TrainProgress {
  int64_t step = 0;             ///< optimizer steps done before this one
  int64_t epoch = 0;            ///< 0-based
  int64_t total_steps = 0;      ///< steps the run will take
  int64_t steps_per_epoch = 0;  ///< batches in one epoch (0: unknown)
  /// step / total_steps, in [0, 1).
  double fraction() const { return total_steps > 0 ? static_cast<double>(step) / static_cast<double>(total_steps) : 0.0; }
};

/// Options for `Schedule`.
///
///   constant: start
///   linear:   start + (end - start) * min(s / span, 1)
///   cosine:   end + (start - end) * (1 + cos(pi * min(s / span, 1))) / 2
///   step:     start * gamma^floor(s / step_size)
///
/// `s` is the optimizer steps done (`TrainProgress::step`), so a schedule's position is the
/// trainer's step counter: a checkpoint restores it and a resumed run continues the schedule
/// exactly. `span` is `span_steps`, else `span_epochs` epochs, else the whole run; after it a
/// linear or cosine schedule holds `end`.
///
/// Example (a DKD warm-up like mdistiller's: the weight rises linearly from 0 to 1 over 20 epochs;
/// mdistiller raises it once per epoch, from 1/20, this every step, from 0):
/// ```
/// auto warmup = kdistill::Schedule(kdistill::ScheduleOptions().kind("linear").start(0).end(1).span_epochs(20));
/// ```
struct ScheduleOptions {
  /// "constant", "linear", "cosine" or "step".
  TORCH_ARG(std::string, kind) = "constant";
  /// The value at step 0 (constant: the value).
  TORCH_ARG(double, start) = 1.0;
  /// linear, cosine: the value at the end of the span.
  TORCH_ARG(double, end) = 1.0;
  /// linear, cosine: steps from start to end (0: see span_epochs).
  TORCH_ARG(int64_t, span_steps) = 0;
  /// linear, cosine: epochs from start to end, when span_steps is 0 (0: the whole run).
  TORCH_ARG(double, span_epochs) = 0;
  /// step: steps between multiplications by gamma.
  TORCH_ARG(int64_t, step_size) = 0;
  /// step: the factor applied every step_size steps.
  TORCH_ARG(double, gamma) = 0.1;
};

/// A value that changes over training: a temperature or an objective's weight. A plain number
/// converts to a constant schedule, so an option declared as a `Schedule` takes either.
///
/// Example:
/// ```
/// kdistill::Schedule t = 4.0;                                                     // constant
/// kdistill::Schedule anneal(kdistill::ScheduleOptions().kind("cosine").start(8).end(2));
/// double now = anneal.at(progress);
/// ```
class Schedule {
 public:
  /// A constant. Throws `kdistill::Error` when `value` is not finite.
  Schedule(double value = 1.0);  // NOLINT(google-explicit-constructor): a number is a constant schedule
  /// Throws `kdistill::Error` for an unknown kind, a non-finite value, a negative span, or a step
  /// schedule without a positive step_size.
  explicit Schedule(ScheduleOptions options);
  /// The value at this point of training.
  double at(const TrainProgress& progress) const;
  /// The value at step 0.
  double initial() const { return options_.start(); }
  bool is_constant() const { return options_.kind() == "constant"; }
  /// Whether every value it takes is > 0 (constant, linear, cosine: start and end; step: start
  /// and gamma).
  bool positive() const;
  /// Whether every value it takes is >= 0.
  bool non_negative() const;
  const ScheduleOptions& options() const { return options_; }
  /// "4", or "linear(8 -> 2 over 20 epochs)": for messages and logs.
  std::string describe() const;

 private:
  ScheduleOptions options_;
};

}  // namespace kdistill
#pragma GCC visibility pop
