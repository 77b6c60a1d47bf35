// Fuzz target: the HDF5 readers, the data-set loader (`--data h5:FILE`) and the teacher-logit
// cache (`--teacher-cache FILE`). Both go through the same dataset reader.
// Contract: any file is either loaded (shapes consistent, values as the checks promise) or
// rejected with kdistill::Error; never a crash, an uncaught HDF5 exception, or an allocation
// far beyond what the file could hold.

#include <cstdio>
#include <cstdlib>

#include <torch/types.h>

#include "fuzz_support.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/teachers/cache.h"

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "fuzz_hdf5: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kdistill::fuzz::ScratchFile scratch(".h5");
  const auto& path = scratch.write(data, size);
  kdistill::fuzz::expect_clean([&] {
    auto ds = kdistill::data::load_hdf5(path, "x", "y");
    if (ds.features().size(0) != ds.targets().size(0)) broken("load_hdf5: features and labels differ in length");
    if (ds.features().scalar_type() != torch::kFloat) broken("load_hdf5: features are not float32");
  });
  kdistill::fuzz::expect_clean([&] {
    kdistill::CachedTeacher teacher(path);
    const auto& logits = teacher.all();
    if (logits.dim() != 2 || logits.size(0) != teacher.info().samples || logits.size(1) != teacher.info().classes) {
      broken("CachedTeacher: logits shape disagrees with its info");
    }
    if (!torch::isfinite(logits).all().item<bool>()) broken("CachedTeacher: accepted non-finite logits");
  });
  return 0;
}
