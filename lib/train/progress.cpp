#include "train/progress.h"

#include <unistd.h>

#include <cstdio>

namespace kdistill::detail {

ProgressBar::ProgressBar(bool enabled, int64_t total_steps)
    : enabled_(enabled && ::isatty(STDERR_FILENO) == 1), total_(total_steps) {}

void ProgressBar::update(int64_t epoch, int64_t epochs, int64_t step, double loss, double samples_per_s) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (start_step_ < 0) {
    start_step_ = step;
    start_ = now;
  }
  if (drawn_ && now - last_ < std::chrono::milliseconds(100) && step < total_) return;
  last_ = now;
  drawn_ = true;
  const double frac = total_ > 0 ? static_cast<double>(step) / static_cast<double>(total_) : 1.0;
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(filled), '=');
  bar.resize(kWidth, ' ');
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = step > start_step_ ? static_cast<double>(step - start_step_) / elapsed : 0.0;
  const long long eta = rate > 0 ? static_cast<long long>(static_cast<double>(total_ - step) / rate) : 0;
  std::fprintf(stderr, "\r\033[Kepoch %lld/%lld [%s] %3.0f%% loss %.4f  %.0f samples/s  ETA %lld:%02lld",
               static_cast<long long>(epoch + 1), static_cast<long long>(epochs), bar.c_str(), 100.0 * frac, loss,
               samples_per_s, eta / 60, eta % 60);
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (enabled_ && drawn_) std::fprintf(stderr, "\r\033[K");
  drawn_ = false;
}

}  // namespace kdistill::detail
