#pragma once

#include <string>
#include <utility>
#include <vector>

#include "kdistill/bench/generation.h"
#include "kdistill/bench/latency.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::bench {

/// One model's entry in a report. Negative numbers mean "not measured" and are left out of JSON.
struct ModelReport {
  std::string arch;
  int64_t params = 0;
  double accuracy = -1;
  double agreement = -1;            ///< top-1 agreement with the teacher
  double train_samples_per_s = -1;
  int64_t size_bytes = -1;          ///< serialized model size
  /// When the report's precision is bf16: the same model's accuracy computed in fp32, and the
  /// top-1 agreement between its bf16 and fp32 predictions (-1: not measured).
  double accuracy_fp32 = -1;
  double agreement_with_fp32 = -1;
  std::vector<LatencyStats> latency;
  /// Language models: held-out bits per byte (per token for other vocabularies), tokens/s of
  /// greedy generation at batch 1, and the generation measurements per batch size (-1 / empty:
  /// not measured).
  double bits_per_byte = -1;
  double tokens_per_s = -1;
  std::vector<GenerationStats> generation;
};

/// A teacher-vs-student trade-off report: the JSON of docs/cli.md ("Reports").
struct Report {
  std::string device = "cpu";
  int threads = 0;
  std::string precision = "fp32";  ///< what the models computed in: "fp32" or "bf16"
  std::string dataset_name;  ///< empty: no "dataset" entry
  int64_t train = -1, test = -1, labeled = -1;
  double temperature = -1, alpha = -1;  ///< negative: no "kd" entry
  /// Entries in order, e.g. {"teacher", ...}, {"student_scratch", ...}, {"student_kd", ...}.
  std::vector<std::pair<std::string, ModelReport>> models;

  /// The entry named `name`, or nullptr.
  const ModelReport* find(const std::string& name) const;
};

/// The report as JSON text (kdistill and libtorch versions included).
std::string to_json(const Report& report);

/// A Markdown table: parameters, accuracy, agreement, training throughput, p50/p99 latency per
/// batch size and the speed-up over `baseline` (default "teacher") at p50.
std::string to_markdown(const Report& report, const std::string& baseline = "teacher");

/// One CSV row per (model, batch size): name, arch, params, batch, mean/p50/p90/p99/max/IQR in ms,
/// samples/s, cold ms, accuracy, agreement.
std::string to_csv(const Report& report);

}  // namespace kdistill::bench
#pragma GCC visibility pop
