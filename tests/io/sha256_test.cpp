// Tests for kdistill/io/sha256.h against FIPS 180-4 vectors, Python's hashlib and `sha256sum`.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/io/sha256.h"
#include "support.h"

namespace {

using kdistill::io::sha256_hex;

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopq"
                       "rsmnopqrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256, MillionAs) {
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Deterministic bytes covering all 256 values.
std::string pattern(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 12345;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

TEST(Sha256, PaddingBoundariesMatchPythonHashlib) {
  // Lengths around the 55/56/64-byte padding boundaries, hashed by Python for comparison.
  const auto r = kdistill::test::python(
      "import hashlib\n"
      "for n in range(0, 131):\n"
      "    print(hashlib.sha256(b'x' * n).hexdigest())\n");
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream lines(r.out);
  std::string expected;
  for (size_t n = 0; n <= 130; ++n) {
    ASSERT_TRUE(static_cast<bool>(std::getline(lines, expected))) << "python printed too few lines";
    EXPECT_EQ(sha256_hex(std::string(n, 'x')), expected) << "length " << n;
  }
}

TEST(Sha256, IncrementalOddChunksEqualOneShot) {
  const std::string data = pattern(5000);
  const std::string one_shot = sha256_hex(data);
  const std::vector<std::vector<size_t>> chunkings = {{1}, {3, 7, 13}, {63, 1, 64, 65}, {55, 9, 128, 0, 200},
                                                      {4999, 1}, {5000}};
  for (const auto& sizes : chunkings) {
    kdistill::io::Sha256 h;
    size_t pos = 0, k = 0;
    while (pos < data.size()) {
      const size_t take = std::min(sizes[k++ % sizes.size()], data.size() - pos);
      h.update(data.data() + pos, take);
      pos += take;
    }
    EXPECT_EQ(h.hex_digest(), one_shot) << "first chunk size " << sizes[0];
  }
}

TEST(Sha256, DigestBytesMatchHex) {
  kdistill::io::Sha256 a, b;
  a.update("abc", 3);
  b.update("abc", 3);
  const auto bytes = a.digest();
  const std::string hex = b.hex_digest();
  ASSERT_EQ(hex.size(), 64u);
  for (size_t i = 0; i < 32; ++i) {
    EXPECT_EQ(static_cast<int>(bytes[i]), std::stoi(hex.substr(2 * i, 2), nullptr, 16)) << i;
  }
  EXPECT_EQ(bytes[0], 0xba);
  EXPECT_EQ(bytes[31], 0xad);
}

std::string sha256sum(const std::string& path) {
  const auto r = kdistill::test::run("sha256sum '" + path + "'");
  EXPECT_EQ(r.status, 0) << r.err;
  return r.out.substr(0, 64);
}

TEST(Sha256File, MatchesSha256sum) {
  kdistill::test::TempDir dir;
  // 3 MiB + 17 bytes: several of sha256_file's 1 MiB reads and a partial last one.
  const std::string big = dir / "big.bin";
  std::ofstream(big, std::ios::binary) << pattern((3u << 20) + 17);
  EXPECT_EQ(kdistill::io::sha256_file(big), sha256sum(big));

  const std::string small = dir / "small.txt";
  std::ofstream(small, std::ios::binary) << "hello\n";
  EXPECT_EQ(kdistill::io::sha256_file(small), sha256sum(small));
  EXPECT_EQ(kdistill::io::sha256_file(small), sha256_hex("hello\n"));

  const std::string empty = dir / "empty";
  std::ofstream(empty, std::ios::binary).flush();
  EXPECT_EQ(kdistill::io::sha256_file(empty), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(kdistill::io::sha256_file(empty), sha256sum(empty));
}

TEST(Sha256File, MissingFileThrowsNamingIt) {
  kdistill::test::TempDir dir;
  const std::string missing = dir / "does-not-exist.bin";
  EXPECT_THAT(kdistill::test::error_of([&] { kdistill::io::sha256_file(missing); }), ::testing::HasSubstr(missing));
}

}  // namespace
