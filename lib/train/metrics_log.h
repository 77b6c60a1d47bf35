#pragma once

// The run's metrics.jsonl: one JSON line per logged step and per epoch. On resume it keeps exactly
// the lines of the steps and epochs the checkpoint covers, so that a resumed run's log reads as an
// uninterrupted one's.

#include <map>
#include <string>

#include "kdistill/train/trainer.h"

namespace kdistill::detail {

class MetricsLog {
 public:
  /// No file: every call does nothing.
  MetricsLog() = default;
  /// `path` is metrics.jsonl. A resumed run (`resumed_step` >= 0) truncates it to the lines of
  /// steps <= resumed_step and epochs < resumed_epoch; a fresh run (-1) empties a file left by a
  /// run that died before its first checkpoint.
  MetricsLog(std::string path, int64_t resumed_step, int64_t resumed_epoch);
  bool enabled() const { return !path_.empty(); }
  void step(int64_t step, int64_t epoch, double loss, double lr, const std::map<std::string, double>& terms) const;
  void epoch(const EpochMetrics& m, bool with_eval) const;

 private:
  std::string path_;
};

}  // namespace kdistill::detail
