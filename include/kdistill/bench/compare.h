#pragma once

#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "kdistill/bench/latency.h"
#include "kdistill/bench/report.h"
#include "kdistill/data/tensor_dataset.h"
#include "kdistill/models/model.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::bench {

/// What `compare` measures.
struct CompareOptions {
  /// Shape of one input, e.g. {1, 28, 28} (required).
  TORCH_ARG(std::vector<int64_t>, input_shape);
  /// Batch sizes to time.
  TORCH_ARG(std::vector<int64_t>, batch_sizes) = std::vector<int64_t>{1, 8, 64, 256};
  /// Where both models run and are timed.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// Warm-up, counts, durations, threads.
  TORCH_ARG(LatencyOptions, latency);
  /// Time LibTorch forward passes of both models.
  TORCH_ARG(bool, libtorch) = true;
  /// Also export the student to the Eigen runtime and time it (entry "student_eigen"; CPU only).
  TORCH_ARG(bool, eigen) = false;
};

/// Teacher against student: parameters, serialized size, latency per batch size (speed-ups follow
/// from the report), and with `data` also each model's accuracy and the student's agreement with
/// the teacher (accuracy retention = student / teacher accuracy). Entries "teacher", "student"
/// and, with `eigen`, "student_eigen".
///
/// Example:
/// ```
/// auto t = kdistill::Model::load_torchscript("teacher.pt"), s = kdistill::Model::load_torchscript("student.pt");
/// auto o = kdistill::bench::CompareOptions().input_shape({1, 28, 28}).batch_sizes({1, 256});
/// std::cout << kdistill::bench::to_markdown(kdistill::bench::compare(t, s, o));
/// ```
Report compare(Model& teacher, Model& student, const CompareOptions& options,
               const data::TensorDataset* data = nullptr);

}  // namespace kdistill::bench
#pragma GCC visibility pop
