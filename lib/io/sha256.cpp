#include "kdistill/io/sha256.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include <c10/util/Exception.h>
#include <openssl/evp.h>

#include "kdistill/core/error.h"

namespace kdistill::io {

// OpenSSL uses the CPU's SHA extensions: a 1 GiB file hashed in 0.81 s, against 4.06 s with the
// hand-written implementation this replaced (bench/results/sha256_cpu.txt).
struct Sha256::Context {
  EVP_MD_CTX* md = nullptr;
  ~Context() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : ctx_(std::make_unique<Context>()) {
  ctx_->md = EVP_MD_CTX_new();
  TORCH_INTERNAL_ASSERT(ctx_->md != nullptr && EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) == 1,
                        "Sha256: OpenSSL could not start a SHA-256 digest");
}

Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(const void* data, size_t size) {
  TORCH_INTERNAL_ASSERT(EVP_DigestUpdate(ctx_->md, data, size) == 1, "Sha256: OpenSSL digest update failed");
}

std::array<uint8_t, 32> Sha256::digest() {
  std::array<uint8_t, 32> out{};
  unsigned int n = 0;
  TORCH_INTERNAL_ASSERT(EVP_DigestFinal_ex(ctx_->md, out.data(), &n) == 1 && n == out.size(),
                        "Sha256: OpenSSL digest failed");
  return out;
}

std::string Sha256::hex_digest() {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (auto byte : digest()) {
    hex.push_back(digits[byte >> 4]);
    hex.push_back(digits[byte & 15]);
  }
  return hex;
}

std::string sha256_hex(const std::string& bytes) {
  Sha256 h;
  h.update(bytes.data(), bytes.size());
  return h.hex_digest();
}

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(static_cast<bool>(in), "sha256_file: cannot open ", path, ": ", std::strerror(errno));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  check(in.eof(), "sha256_file: read error on ", path);
  return h.hex_digest();
}

}  // namespace kdistill::io
