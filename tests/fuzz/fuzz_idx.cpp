// Fuzz target: the IDX reader (plain and gzip), as `kdistill train --data mnist:DIR` reaches it.
// Contract: any byte string is either read as a uint8 tensor whose element count matches its
// header, or rejected with kdistill::Error; never a crash, a hang or an allocation the file cannot
// back (a 16-byte header must not make the reader ask for a terabyte).

#include <cstdio>
#include <cstdlib>

#include <torch/types.h>

#include "fuzz_support.h"
#include "kdistill/data/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static kdistill::fuzz::ScratchFile scratch(".idx");
  const auto& path = scratch.write(data, size);
  kdistill::fuzz::expect_clean([&] {
    auto t = kdistill::data::read_idx(path);
    // A successful read is a uint8 tensor of 1 to 4 dimensions (read_idx itself checks that the
    // payload is exactly what the header announces, with nothing after it).
    if (t.scalar_type() != torch::kUInt8 || t.dim() < 1 || t.dim() > 4) {
      std::fprintf(stderr, "fuzz_idx: read_idx returned dtype %s with %d dims\n",
                   std::string(c10::toString(t.scalar_type())).c_str(), static_cast<int>(t.dim()));
      std::abort();
    }
  });
  return 0;
}
