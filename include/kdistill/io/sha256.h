#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::io {

/// Incremental SHA-256 (FIPS 180-4), for file hashes in manifests and checkpoint checksums.
/// Computed by OpenSSL's libcrypto (EVP), which uses the CPU's SHA instructions where it has them.
/// Movable, not copyable.
///
/// Example:
/// ```
/// kdistill::io::Sha256 h; h.update("abc", 3); std::string hex = h.hex_digest();
/// ```
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;
  /// Feeds `size` bytes.
  void update(const void* data, size_t size);
  /// The 32-byte digest; call once, after the last `update`.
  std::array<uint8_t, 32> digest();
  /// The digest as 64 lowercase hex characters.
  std::string hex_digest();

 private:
  struct Context;  // OpenSSL's EVP_MD_CTX, kept out of this header
  std::unique_ptr<Context> ctx_;
};

/// SHA-256 of a byte string, as hex.
std::string sha256_hex(const std::string& bytes);

/// SHA-256 of a file's contents, as hex; throws `kdistill::Error` naming the file if unreadable.
std::string sha256_file(const std::string& path);

}  // namespace kdistill::io
#pragma GCC visibility pop
