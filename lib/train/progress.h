#pragma once

// A one-line progress bar for terminals; silent when stderr is not a TTY.

#include <chrono>
#include <cstdint>
#include <string>

namespace kdistill::detail {

class ProgressBar {
 public:
  ProgressBar(bool enabled, int64_t total_steps);
  /// Redraws at most every 100 ms.
  void update(int64_t epoch, int64_t epochs, int64_t step, double loss, double samples_per_s);
  /// Ends the line.
  void finish();
  bool active() const { return enabled_; }

 private:
  bool enabled_;
  int64_t total_;
  std::chrono::steady_clock::time_point last_, start_;
  int64_t start_step_ = -1;
  bool drawn_ = false;
};

}  // namespace kdistill::detail
