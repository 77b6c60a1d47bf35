// Fuzz target: the HDF5 readers, the data-set loader (`--data h5:FILE`) and the teacher-logit
// cache (`--teacher-cache FILE`). Both go through the same dataset reader.
// Contract: any file is either loaded (shapes consistent, values as the checks promise) or
// rejected with kdistill::Error; never a crash, an uncaught HDF5 exception, or an allocation
// far beyond what the file could hold.

#include <algorithm>
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
    const auto& info = teacher.info();
    if (teacher.top_k() > 0) {  // a topk cache: rows as the trainer reads them, and their dense stand-in
      if (teacher.top_k() > info.classes || info.samples < 1) broken("CachedTeacher: top-k disagrees with its info");
      auto out = teacher.outputs(torch::Tensor(), torch::arange(std::min<int64_t>(info.samples, 4)));
      const auto& idx = out.topk.indices;
      if (idx.size(1) != teacher.top_k() || idx.min().item<int64_t>() < 0 || idx.max().item<int64_t>() >= info.classes) {
        broken("CachedTeacher: accepted top-k indices outside its classes");
      }
      if (out.logits.size(1) != info.classes || !torch::isfinite(out.logits).all().item<bool>()) {
        broken("CachedTeacher: the top-k stand-in logits are not finite [n, classes]");
      }
      return;
    }
    const auto& logits = teacher.all();
    if (logits.dim() != 2 || logits.size(0) != info.samples || logits.size(1) != info.classes) {
      broken("CachedTeacher: logits shape disagrees with its info");
    }
    if (!torch::isfinite(logits).all().item<bool>()) broken("CachedTeacher: accepted non-finite logits");
  });
  return 0;
}
