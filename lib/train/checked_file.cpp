#include "train/checked_file.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include <c10/util/Exception.h>

#include "kdistill/core/error.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/io/sha256.h"

namespace kdistill::detail {
namespace {

constexpr size_t kMagicSize = 16;
constexpr size_t kHashSize = 32;

std::string padded(const std::string& magic) {
  TORCH_INTERNAL_ASSERT(magic.size() < kMagicSize);
  std::string m = magic;
  m.resize(kMagicSize, '\n');
  return m;
}

}  // namespace

void write_checked_file(const std::string& path, const std::string& magic, const std::vector<char>& payload) {
  io::Sha256 h;
  h.update(payload.data(), payload.size());
  auto digest = h.digest();
  const uint64_t n = payload.size();
  io::atomic_write(path, [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    check(static_cast<bool>(out), "write_checked_file: cannot create ", tmp, ": ", std::strerror(errno));
    out.write(padded(magic).data(), kMagicSize);
    out.write(reinterpret_cast<const char*>(&n), sizeof n);
    out.write(payload.data(), static_cast<std::streamsize>(payload.size()));
    out.write(reinterpret_cast<const char*>(digest.data()), kHashSize);
    out.close();
    check(static_cast<bool>(out), "write_checked_file: failed writing ", tmp);
  });
}

std::vector<char> read_checked_file(const std::string& path, const std::string& magic) {
  check(std::filesystem::is_regular_file(path), "checkpoint ", path, " does not exist or is not a file");
  const std::string bytes = io::read_file(path);
  const std::string expect = padded(magic);
  check(bytes.size() >= kMagicSize + 8 + kHashSize && bytes.compare(0, kMagicSize, expect) == 0, "checkpoint ",
        path, " is not a kdistill ", magic, " file (wrong header)");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data() + kMagicSize, sizeof n);
  check(bytes.size() == kMagicSize + 8 + n + kHashSize, "checkpoint ", path, " is truncated or padded: header says ",
        n, " payload bytes, file holds ", bytes.size() < kMagicSize + 8 + kHashSize ? 0 : bytes.size() - kMagicSize - 8 - kHashSize);
  io::Sha256 h;
  h.update(bytes.data() + kMagicSize + 8, n);
  auto digest = h.digest();
  check(std::memcmp(digest.data(), bytes.data() + kMagicSize + 8 + n, kHashSize) == 0, "checkpoint ", path,
        " is corrupt: SHA-256 of its contents does not match");
  return std::vector<char>(bytes.begin() + kMagicSize + 8, bytes.begin() + kMagicSize + 8 + static_cast<long>(n));
}

}  // namespace kdistill::detail
