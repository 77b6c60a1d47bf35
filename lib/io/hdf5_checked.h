#pragma once

// Checks shared by kdistill's HDF5 readers (the torch-side data and cache readers and the
// torch-free serving runtime), for what fuzz_hdf5 and fuzz_runtime found. Private to the library.
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

/// Reads a string attribute (fixed or variable length). A variable-length string may legally be
/// NULL in the file; HDF5's C++ wrapper passes it to strlen (found by fuzz_hdf5), so this reads
/// through the C API and gives "" for it. Throws kdistill::Error starting with `where` when the
/// attribute is not one string.
inline std::string read_string_attribute(const H5::Attribute& attr, const std::string& where) {
  check(attr.getTypeClass() == H5T_STRING, where, " is not a string");
  check(attr.getSpace().getSimpleExtentNpoints() == 1, where, " is not a single string");
  H5::StrType type = attr.getStrType();
  if (!type.isVariableStr()) {
    std::string value;
    attr.read(type, value);
    return value;
  }
  char* raw = nullptr;
  check(H5Aread(attr.getId(), type.getId(), &raw) >= 0, where, " cannot be read");
  std::string value = raw != nullptr ? std::string(raw) : std::string();
  if (raw != nullptr) H5free_memory(raw);
  return value;
}

}  // namespace kdistill::detail
