#pragma once

#include <string>
#include <vector>

#include "kdistill/bench/latency.h"
#include "kdistill/bench/report.h"
#include "kdistill/data/tensor_dataset.h"
#include "kdistill/models/model.h"

namespace kdistill::bench {

/// What `compare` measures.
struct CompareOptions {
  /// Shape of one input, e.g. {1, 28, 28} (required).
  std::vector<int64_t> input_shape;
  /// Batch sizes to time.
  std::vector<int64_t> batch_sizes = {1, 8, 64, 256};
  /// "cpu", "cuda" or "cuda:N".
  std::string device = "cpu";
  /// Warm-up, counts, durations, threads.
  LatencyOptions latency;
  /// Time LibTorch forward passes of both models.
  bool torch = true;
  /// Also export the student to the Eigen runtime and time it (entry "student_eigen"; CPU only).
  bool eigen = false;
};

/// Teacher against student: parameters, serialized size, latency per batch size (speed-ups follow
/// from the report), and with `data` also each model's accuracy and the student's agreement with
/// the teacher (accuracy retention = student / teacher accuracy). Entries "teacher", "student"
/// and, with `eigen`, "student_eigen".
///
/// Example:
/// ```
/// auto t = kdistill::Model::load_torchscript("teacher.pt"), s = kdistill::Model::load_torchscript("student.pt");
/// kdistill::bench::CompareOptions o;
/// o.input_shape = {1, 28, 28};
/// std::cout << kdistill::bench::to_markdown(kdistill::bench::compare(t, s, o));
/// ```
Report compare(Model& teacher, Model& student, const CompareOptions& options,
               const data::TensorDataset* data = nullptr);

}  // namespace kdistill::bench
