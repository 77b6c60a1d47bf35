#pragma once

// `kdistill demo --task lm`: its settings and its run (demo_lm.cpp).

#include <cstdint>
#include <string>
#include <vector>

namespace kdistill::cli {

/// Files of Debian's fortunes held out as the test text.
extern const std::vector<std::string> kHeldOutFortunes;

struct LmDemoArgs {
  std::string data = "/usr/share/games/fortunes";
  std::string teacher = "transformer:128,2,4";
  std::string student = "transformer:64,1,2";
  int64_t length = 128;
  int64_t epochs_teacher = 2;
  int64_t epochs_student = 2;
  double temperature = 1.0;
  double alpha = 0.5;
  std::string divergence = "kl";  ///< the soft term: kl (Hinton's KD) or a `DivergenceOptions` kind
  int64_t batch_size = 32;
  double lr = 3e-3;
  double teacher_lr = 3e-3;
  int64_t warmup_steps = 100;
  uint64_t seed = 0;
  int threads = 2;
  std::string device = "cpu";
  std::string report;
  std::string teacher_weights;
  int64_t max_bytes = 0;  ///< 0: all the text
  /// Empty: the distilled student learns from the live teacher. "dense", "topk:K" or "sampled:S":
  /// from a cache of the teacher's outputs over the training windows, in a temporary file (read whole
  /// up to 1 GiB decoded, streamed beyond).
  std::string teacher_cache;
  int64_t prompt = 32, new_tokens = 64, runs = 3;
};

int run_lm_demo(const LmDemoArgs& args);

}  // namespace kdistill::cli
