#pragma once

// The memory bound shared by kdistill's HDF5 readers (the torch-side dataset reader and the
// torch-free serving runtime). Private to the library.
//
// A dataset's header is not trusted with memory (found by fuzz_hdf5): a 2 KB file can declare a
// terabyte-sized dataset that it never stored. Real data is stored, at most deflate's ~1032:1
// ratio smaller than it reads; a dataset claiming more than that of what the file holds is
// refused before anything is allocated. Small datasets pass regardless.

#include <H5Cpp.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "kdistill/core/error.h"

namespace kdistill::detail {

/// Throws kdistill::Error starting with `where` when `ds`, read as `element_bytes`-byte values of
/// shape `dims`, would need more memory than the file `path` can back.
inline void check_stored(const H5::DataSet& ds, const std::vector<hsize_t>& dims, size_t element_bytes,
                         const std::string& path, const std::string& where) {
  constexpr double kMaxInflation = 1100, kSmallBytes = 1 << 16;
  std::error_code ec;
  const auto file_bytes = std::filesystem::file_size(path, ec);
  const double stored = std::min<double>(static_cast<double>(ds.getStorageSize()),
                                         ec ? 0.0 : static_cast<double>(file_bytes));
  double bytes = static_cast<double>(element_bytes);
  for (auto d : dims) bytes *= static_cast<double>(d);
  if (bytes > stored * kMaxInflation + kSmallBytes) {
    std::string shape;
    for (auto d : dims) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    fail(where, " declares shape [", shape, "] (", bytes, " bytes) but the file stores ", static_cast<int64_t>(stored),
         " bytes of it: the dataset is corrupt or was never written");
  }
}

}  // namespace kdistill::detail
