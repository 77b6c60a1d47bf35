#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace kdistill::io {

/// Incremental SHA-256 (FIPS 180-4), for file hashes in manifests and checkpoint checksums.
///
/// Example:
/// ```
/// kdistill::io::Sha256 h; h.update("abc", 3); std::string hex = h.hex_digest();
/// ```
class Sha256 {
 public:
  Sha256();
  /// Feeds `size` bytes.
  void update(const void* data, size_t size);
  /// The 32-byte digest; call once, after the last `update`.
  std::array<uint8_t, 32> digest();
  /// The digest as 64 lowercase hex characters.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t length_ = 0;
};

/// SHA-256 of a byte string, as hex.
std::string sha256_hex(const std::string& bytes);

/// SHA-256 of a file's contents, as hex; throws `kdistill::Error` naming the file if unreadable.
std::string sha256_file(const std::string& path);

}  // namespace kdistill::io
