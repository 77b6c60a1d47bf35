// Fuzz target: the serving runtime's model loader (`serve_eigen`, `kdistill eval student.h5`),
// which links no LibTorch. Contract: any file is either loaded into a network whose shapes are
// consistent, or rejected with kdistill::Error; a loaded network then runs one input without a
// memory error (ASan) and gives num_classes logits.

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fuzz_support.h"
#include "kdistill/runtime/runtime.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kdistill::fuzz::ScratchFile scratch(".h5");
  const auto& path = scratch.write(data, size);
  kdistill::fuzz::expect_clean([&] {
    const auto model = kdistill::runtime::Model::load(path);
    const std::vector<float> input(static_cast<size_t>(model.input_size()), 0.5f);
    const auto logits = model.predict(input);
    if (static_cast<int64_t>(logits.size()) != model.num_classes()) {
      std::fprintf(stderr, "fuzz_runtime: %zu logits for %lld classes\n", logits.size(),
                   static_cast<long long>(model.num_classes()));
      std::abort();
    }
  });
  return 0;
}
