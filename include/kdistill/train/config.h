#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kdistill/losses/schedule.h"

#include "kdistill/train/distributed.h"
#include "kdistill/train/trainer.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// Where a configured run's data comes from.
struct DataConfig {
  /// "idx" (an MNIST-family directory), "hdf5" (features and labels), "text" (UTF-8 text, read as
  /// bytes: next-byte language modelling) or "tokens" (HDF5 token sequences, `load_tokens_hdf5`)
  std::string format = "idx";
  std::string path = "/usr/share/datasets/fashion-mnist";  ///< idx: the directory; text: a file or directory
  std::string train;           ///< hdf5, tokens: training file
  std::string test;            ///< hdf5, tokens: test file; text: held-out text file or directory (optional)
  int64_t length = 128;        ///< text: positions per window (`text_windows`)
  int64_t pad_id = -1;         ///< tokens: the padding id, when the file has no `pad_id` attribute
  std::string features = "x";  ///< hdf5: features dataset
  std::string labels = "y";    ///< hdf5: labels dataset
  int64_t labeled = 0;         ///< > 0: only the first N training labels are kept (transfer set)
  /// > 0: the last N training samples are held out and evaluated on in place of the test set (for
  /// tuning a recipe without looking at the test set); `labeled` then counts within the rest.
  int64_t validation = 0;
};

/// One weighted objective of a run's `loss:` (see `CompositeObjective`).
/// Kinds: kd (Hinton's forward KL with its label share), ce, soft_ce, mse, hint, at, dkd, and the
/// divergences reverse_kl, jsd, tvd, skew_kl, skew_reverse_kl (see `divergence`).
struct ObjectiveConfig {
  std::string kind = "kd";
  std::string name;               ///< the term's name in metrics.jsonl; defaults to `kind`
  Schedule weight = 1.0;          ///< a number, or `{schedule: linear, start: 0, end: 1, epochs: 20}`
  /// kd, soft_ce, dkd (default 4) and the divergences (default 1): a number or a schedule.
  Schedule temperature = 4.0;
  double alpha = 1.0;             ///< kd: its soft term's share (default 1 in a list, where `ce` is its own entry; 0.9 in the mapping form); dkd: the TCKD weight (default 1)
  double beta = 0.5;              ///< jsd: the teacher's share of the mixture (default 0.5); dkd: the NCKD weight (default 8)
  double skew = 0.1;              ///< skew_kl, skew_reverse_kl
  double p = 2.0;                 ///< at: the attention map's exponent
  std::string student;            ///< hint: the student tap
  std::string teacher;            ///< hint: the teacher tap
  std::string adapter = "conv1x1";  ///< hint: conv1x1 or linear
  std::vector<std::pair<std::string, std::string>> pairs;  ///< at: (student tap, teacher tap) pairs
};

/// One member of a teacher ensemble: a TorchScript model or a logit cache, with its weight.
struct EnsembleMemberConfig {
  std::string torchscript;
  std::string cache;
  bool stream = false;  ///< read the cache block by block (`CacheReadOptions::stream`)
  double weight = 1.0;
};

/// A configured distillation run: the YAML schema of docs/cli.md ("The run configuration").
///
/// Example (run.yaml):
/// ```
/// seed: 0
/// data: {format: idx, path: /usr/share/datasets/fashion-mnist}
/// teacher: {torchscript: teacher.pt}      # or {cache: logits.h5, stream: false}; omit for a labels-only baseline
/// student: {torchscript: student.pt}
/// loss: {kind: kd, temperature: 4.0, alpha: 0.9}
/// train: {epochs: 10, batch_size: 128, optimizer: sgd, lr: 0.05, schedule: cosine}
/// output: runs/exp1
/// ```
struct RunConfig {
  uint64_t seed = 0;
  std::string device = "cpu";
  int threads = 0;
  DataConfig data;
  std::string teacher_torchscript;  ///< a TorchScript teacher, or
  std::string teacher_cache;        ///< an HDF5 logit cache; neither: train from labels alone
  bool teacher_stream = false;      ///< `teacher: {cache: ..., stream: true}`: read it block by block
  std::vector<EnsembleMemberConfig> teacher_ensemble;  ///< or a weighted ensemble of both kinds
  std::string student_torchscript;  ///< the untrained TorchScript student (required)
  std::string loss_kind = "kd";     ///< the mapping form's kind
  /// The list form of `loss:` (`[{kind: kd, weight: 0.9, temperature: 4}, {kind: ce, weight: 0.1}]`);
  /// empty for the mapping form (`{kind: kd, temperature: 4, alpha: 0.9}`), which `train.loss()` holds.
  std::vector<ObjectiveConfig> objectives;
  TrainerOptions train;             ///< train.* keys and loss temperature/alpha
  std::string output;               ///< output directory (required)
  /// Born-again distillation: > 1 trains that many students in turn, each the next one's teacher
  /// (the first learns from `teacher:`, or from labels alone without one).
  int64_t generations = 1;
  /// `distributed: {backend: gloo|nccl, timeout_s: 300, bucket_mb: 1}`: how data-parallel ranks
  /// talk (`bucket_mb` goes to `train.bucket_mb()`). The rank, world size and rendezvous come from
  /// the environment (`distributed_from_env`).
  DistributedOptions distributed;
};

/// Parses YAML (or JSON, which is YAML) into a `RunConfig`. Relative paths are resolved against
/// `base_dir`. Unknown keys, wrong types and missing required keys throw `kdistill::Error` naming
/// the origin and the key path: `run.yaml: train.lr: expected a number, got "fast"`.
RunConfig parse_config(const std::string& text, const std::string& origin = "config",
                       const std::string& base_dir = ".");

/// Reads and parses a YAML file; relative paths are resolved against its directory.
RunConfig load_config(const std::string& path);

/// The resolved configuration as YAML (every key, with defaults filled in and absolute paths);
/// `parse_config(to_yaml(c))` gives `c` back.
std::string to_yaml(const RunConfig& config);

}  // namespace kdistill
#pragma GCC visibility pop
