#pragma once

#include <string>
#include <vector>

#include "kdistill/train/config.h"
#include "kdistill/train/trainer.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// What a configured run produced.
struct RunResult {
  std::string output_dir;
  TrainResult train;
  std::string report_json;  ///< the contents of report.json
  /// With `generations: N` > 1: each generation's result, first to last (`train` is the last's).
  std::vector<TrainResult> generations;
};

/// Runs a configured distillation. The output directory receives: `config.yaml` (resolved),
/// `student_init.pt` (the untrained student, so a resume does not depend on the original file),
/// `checkpoints/`, `metrics.jsonl`, `student.pt` (TorchScript, loadable by `torch.jit.load`),
/// `report.json`, and `manifest.json` (resolved config, seed, SHA-256 of data, teacher and
/// student files, versions, device, BLAS, start and end times, status, final metrics). Every
/// file is written atomically; an output directory that already holds a run is refused. On
/// failure the manifest records the error and earlier files are left as they were.
///
/// With `generations: N` > 1 (born-again distillation), generation g runs in
/// `output/generation_g/` (each a full run directory as above), the g-th student being the
/// teacher of generation g + 1. Every generation starts from the same untrained student file (a
/// TorchScript file carries its initial weights) and shuffles with seed + g - 1. `output/` receives `config.yaml`, the last generation's
/// `student.pt`, a `report.json` whose models are `teacher` (when the first generation had one)
/// and `student_gen1` ... `student_genN`, and a `manifest.json` listing the generations.
///
/// Example:
/// ```
/// auto result = kdistill::run_config(kdistill::load_config("run.yaml"));
/// ```
RunResult run_config(const RunConfig& config);

/// Continues the run in `output_dir` from its last checkpoint (or from the start if it has none),
/// using the `config.yaml` stored there. A finished run is read back from its files: nothing is trained or written.
RunResult resume_run(const std::string& output_dir);

}  // namespace kdistill
#pragma GCC visibility pop
