// Fuzz target: the HDF5 readers, the data-set loader (`--data h5:FILE`) and the teacher-logit
// cache (`--teacher-cache FILE`), dense, top-k or sampled, loaded whole or streamed.
// Contract: any file is either loaded (shapes consistent, values as the checks promise) or
// rejected with kdistill::Error; never a crash, an uncaught HDF5 exception, or an allocation
// far beyond what the file could hold.

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <torch/types.h>

#include "fuzz_support.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/teachers/cache.h"

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "fuzz_hdf5: %s\n", what);
  std::abort();
}

// A cache is read as the trainer reads it, loaded whole or streamed: every row, by the plan.
void check_cache(const std::string& path, bool stream) {
  kdistill::CachedTeacher teacher(path, kdistill::CacheReadOptions().stream(stream).read_ahead_mb(1));
  const auto& info = teacher.info();
  if (info.samples < 1 || info.classes < 1) broken("CachedTeacher: accepted a cache without rows or classes");
  const auto rows = torch::arange(info.samples);
  teacher.plan(rows);
  auto out = teacher.outputs(torch::Tensor(), rows);
  const auto& l = out.logits;
  if (l.dim() < 2 || l.size(0) != info.samples || l.size(-1) != info.classes) {
    broken("CachedTeacher: logits shape disagrees with its info");
  }
  if (!torch::isfinite(l).all().item<bool>()) broken("CachedTeacher: accepted non-finite logits (or stand-in)");
  if (info.format == "topk") {
    const auto& idx = out.topk.indices;
    if (idx.size(-1) != info.k || idx.min().item<int64_t>() < 0 || idx.max().item<int64_t>() >= info.classes) {
      broken("CachedTeacher: accepted top-k indices outside its classes");
    }
  }
  if (info.format == "sampled") {
    const auto& s = out.sampled;
    if (s.indices.size(-1) != info.draws || s.indices.min().item<int64_t>() < -1 ||
        s.indices.max().item<int64_t>() >= info.classes || s.top1.min().item<int64_t>() < 0 ||
        s.top1.max().item<int64_t>() >= info.classes) {
      broken("CachedTeacher: accepted sampled indices outside its classes");
    }
    if ((s.weights.sum(-1) - 1).abs().max().item<double>() > 0.02) broken("CachedTeacher: accepted shares not summing to 1");
  }
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
  for (const bool stream : {false, true}) {
    kdistill::fuzz::expect_clean([&] { check_cache(path, stream); });
  }
  return 0;
}
