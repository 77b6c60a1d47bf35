#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "kdistill/bench/latency.h"
#include "kdistill/data/tensor_dataset.h"
#include "kdistill/metrics/significance.h"
#include "kdistill/models/model.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::bench {

/// Options for `compare_paired`.
struct PairedOptions {
  /// Batch sizes at which both models are timed (empty: no timing).
  TORCH_ARG(std::vector<int64_t>, batch_sizes) = std::vector<int64_t>{1, 256};
  /// Where both models run.
  TORCH_ARG(torch::Device, device) = torch::kCPU;
  /// Warm-up, counts, durations and threads of the timing.
  TORCH_ARG(LatencyOptions, latency) = {};
  /// Resamples, level and seed of the bootstrap interval.
  TORCH_ARG(metrics::BootstrapOptions, bootstrap) = {};
};

/// One model's side of a paired comparison.
struct PairedSide {
  std::string arch;
  int64_t params = 0;
  double accuracy = 0;
  torch::Tensor predictions;  ///< int64 `[n]`: top class per sample
  torch::Tensor confidence;   ///< float `[n]`: the top class's softmax probability
  std::vector<LatencyStats> latency;  ///< one per batch size
};

/// Two models scored on the same labelled samples.
struct PairedComparison {
  int64_t n = 0;
  std::string dataset;
  PairedSide a, b;
  double difference = 0;  ///< accuracy(B) - accuracy(A)
  int64_t a_only = 0;     ///< samples A gets right and B wrong
  int64_t b_only = 0;     ///< samples B gets right and A wrong
  double mcnemar_p = 1;   ///< `metrics::mcnemar_exact_p(a_only, b_only)`
  double ci_low = 0, ci_high = 0;  ///< bootstrap interval of `difference`
  double ci_level = 0.95;
  double agreement = 0;   ///< share of samples with the same top class
  torch::Tensor labels;   ///< int64 `[n]`
};

/// Scores A and B on every sample of `data` (which must all be labelled) and compares them as a
/// pair: each accuracy and their difference, McNemar's exact p-value, a bootstrap confidence
/// interval of the difference, agreement, and (with batch sizes) each model's latency. Throws
/// `kdistill::Error` when the data has unlabelled samples or the models' outputs do not have the
/// data's classes.
///
/// Example:
/// ```
/// auto a = kdistill::Model::load_torchscript("kd.pt"), b = kdistill::Model::load_torchscript("dkd.pt");
/// auto test = kdistill::data::load_spec("/usr/share/datasets/fashion-mnist", "test");
/// auto c = kdistill::bench::compare_paired(a, b, test);
/// std::cout << kdistill::bench::to_markdown(c);
/// ```
PairedComparison compare_paired(Model& a, Model& b, const data::TensorDataset& data, const PairedOptions& options = {});

/// The comparison as JSON (docs/cli.md, `kdistill compare`: `n`, `a`, `b`, `difference`, `mcnemar_p`, `ci95`,
/// `agreement`, plus the counts, each model's latency and the latency differences).
std::string to_json(const PairedComparison& c);

/// A short Markdown table and the verdict line.
std::string to_markdown(const PairedComparison& c);

/// CSV of the samples to review: those where A and B disagree, or where either's confidence is
/// below `unsure_below`. Columns: index, label, a_prediction, a_confidence, b_prediction,
/// b_confidence (a header line first).
std::string disagreements_csv(const PairedComparison& c, double unsure_below = 0.5);

}  // namespace kdistill::bench
#pragma GCC visibility pop
