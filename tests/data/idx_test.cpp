// Tests for kdistill/data/idx.h: IDX round trips, files written by Python and gzip, and errors.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/data/idx.h"
#include "support.h"

namespace {

using kdistill::data::read_idx;
using kdistill::data::write_idx;
using kdistill::test::TempDir;
using ::testing::HasSubstr;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_bytes(const std::string& path, const std::vector<int>& bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  std::ofstream(path, std::ios::binary) << s;
}

// Calls read_idx(path), expecting kdistill::Error; returns its message (or error_of's marker).
std::string read_error(const std::string& path) { return kdistill::test::error_of([&] { read_idx(path); }); }

TEST(Idx, RoundTripPlainAndGz) {
  TempDir dir;
  torch::manual_seed(3);
  const auto values = torch::randint(0, 256, {3, 4, 5}, torch::kUInt8);
  for (const std::string name : {"v.idx", "v.idx.gz"}) {
    write_idx(dir / name, values);
    const auto back = read_idx(dir / name);
    EXPECT_EQ(back.scalar_type(), torch::kUInt8) << name;
    EXPECT_EQ(back.sizes().vec(), values.sizes().vec()) << name;
    EXPECT_TRUE(torch::equal(back, values)) << name;
  }
  const auto labels = torch::arange(0, 10, torch::kLong).to(torch::kUInt8);
  write_idx(dir / "l.gz", labels);
  EXPECT_TRUE(torch::equal(read_idx(dir / "l.gz"), labels));
}

TEST(Idx, PlainFileLayoutAndGzipToolAgree) {
  TempDir dir;
  const auto values = torch::arange(250, 256, torch::kLong).reshape({2, 3}).to(torch::kUInt8);
  write_idx(dir / "p.idx", values);
  write_idx(dir / "p.idx.gz", values);
  const std::string expected("\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03\xfa\xfb\xfc\xfd\xfe\xff", 18);
  EXPECT_EQ(slurp(dir / "p.idx"), expected);
  const std::string gz = slurp(dir / "p.idx.gz");
  ASSERT_GE(gz.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);  // a real gzip stream
  EXPECT_EQ(static_cast<unsigned char>(gz[1]), 0x8b);
  const auto r = kdistill::test::run("gzip -dc '" + (dir / "p.idx.gz") + "' > '" + (dir / "unzipped") + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(slurp(dir / "unzipped"), expected);
}

TEST(Idx, ReadsGzWrittenByPython) {
  TempDir dir;
  const std::string path = dir / "py-idx3-ubyte.gz";
  const auto r = kdistill::test::python(
      "import gzip, struct\n"
      "payload = bytes((i * 7 + 1) % 256 for i in range(2 * 3 * 5))\n"
      "with gzip.open(r'" + path + "', 'wb') as f:\n"
      "    f.write(struct.pack('>BBBB', 0, 0, 8, 3) + struct.pack('>III', 2, 3, 5) + payload)\n");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto t = read_idx(path);
  ASSERT_EQ(t.sizes().vec(), (std::vector<int64_t>{2, 3, 5}));
  auto flat = t.flatten();
  for (int64_t i = 0; i < 30; ++i) EXPECT_EQ(flat[i].item<int64_t>(), (i * 7 + 1) % 256) << i;
}

// A well-formed single-member .gz is inflated whole (libdeflate): its tensor is a view past the
// IDX header of the inflated file. Two gzip members (what `cat a.gz b.gz` makes) are valid gzip
// that the whole-file path declines; the streaming reader must then return the same values.
TEST(Idx, WholeFileAndMultiMemberGzipAgree) {
  TempDir dir;
  // 6 MB: large enough for the huge-page buffer, varied enough to compress into real blocks.
  auto values = torch::arange(0, 1500 * 4000, torch::kLong).reshape({1500, 4000});
  values = (values * 31 + values.floor_divide(4000) * 7).remainder(253).to(torch::kUInt8);
  const std::string single = dir / "single.gz";
  write_idx(single, values);
  const auto whole = read_idx(single);
  EXPECT_TRUE(torch::equal(whole, values));
  EXPECT_EQ(whole.storage_offset(), 4 + 4 * 2) << "expected the whole-file path";

  const std::string multi = dir / "multi.gz";
  const auto r = kdistill::test::python(
      "import gzip\n"
      "raw = gzip.decompress(open(r'" + single + "', 'rb').read())\n"
      "half = len(raw) // 2\n"
      "open(r'" + multi + "', 'wb').write(gzip.compress(raw[:half]) + gzip.compress(raw[half:]))\n");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto streamed = read_idx(multi);
  EXPECT_TRUE(torch::equal(streamed, values));
  EXPECT_EQ(streamed.storage_offset(), 0) << "expected the streaming path";
}

TEST(Idx, WriteRejectsBadTensors) {
  TempDir dir;
  EXPECT_THROW(write_idx(dir / "f.gz", torch::zeros({3})), kdistill::Error);  // float
  EXPECT_THROW(write_idx(dir / "s.gz", torch::scalar_tensor(5, torch::kUInt8)), kdistill::Error);
  EXPECT_THROW(write_idx(dir / "5d.gz", torch::zeros({1, 1, 1, 1, 1}, torch::kUInt8)), kdistill::Error);
}

TEST(IdxErrors, MissingFile) {
  TempDir dir;
  const std::string path = dir / "nope-idx1-ubyte.gz";
  const auto msg = read_error(path);
  EXPECT_THAT(msg, HasSubstr(path)) << msg;
  EXPECT_THAT(msg, HasSubstr("cannot open")) << msg;
}

TEST(IdxErrors, WrongMagic) {
  TempDir dir;
  const std::string path = dir / "float.idx";
  write_bytes(path, {0, 0, 0x0D, 1, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8});  // float IDX, 2 values
  const auto msg = read_error(path);
  EXPECT_THAT(msg, HasSubstr(path)) << msg;
  EXPECT_THAT(msg, HasSubstr("magic")) << msg;
  write_bytes(path, {0, 0, 8, 0});  // zero dimensions
  EXPECT_THAT(read_error(path), HasSubstr("magic"));
}

TEST(IdxErrors, TruncatedPayload) {
  TempDir dir;
  const std::string path = dir / "short.idx";
  write_bytes(path, {0, 0, 8, 1, 0, 0, 0, 10, 1, 2, 3, 4});  // announces 10 bytes, holds 4
  auto msg = read_error(path);
  EXPECT_THAT(msg, HasSubstr(path)) << msg;
  EXPECT_THAT(msg, HasSubstr("truncated")) << msg;

  const std::string gz = dir / "short.idx.gz";  // a valid gzip stream whose IDX payload is short
  const auto r = kdistill::test::python("import gzip\nwith gzip.open(r'" + gz +
                                        "', 'wb') as f:\n    f.write(bytes([0, 0, 8, 2, 0, 0, 0, 4, 0, 0, 0, 4]) + "
                                        "bytes(range(10)))\n");
  ASSERT_EQ(r.status, 0) << r.err;
  msg = read_error(gz);
  EXPECT_THAT(msg, HasSubstr(gz)) << msg;
  EXPECT_THAT(msg, HasSubstr("truncated")) << msg;
}

// Found by fuzz_idx (tests/fuzz/regressions/idx/): a 19-byte file whose header announced 7.9 GB
// made the reader allocate all of it before finding the file short. A header announcing almost a
// terabyte (1,099,494,785,025 bytes, just under the 2^40 cap and more than this machine can allocate) must fail as truncated, naming
// what the file holds, not as an allocation failure.
TEST(IdxErrors, HeaderAnnouncingATerabyteFailsAsTruncatedWithoutAllocatingIt) {
  TempDir dir;
  const std::string path = dir / "huge.idx";
  // 3 dims: 0xFF x 0xFFFF x 0x10101 (about 2^40 bytes), then 5 payload bytes.
  write_bytes(path, {0, 0, 8, 3, 0, 0, 0, 0xFF, 0, 0, 0xFF, 0xFF, 0, 1, 1, 1, 1, 2, 3, 4, 5});
  const auto msg = read_error(path);
  EXPECT_THAT(msg, HasSubstr("truncated")) << msg;
  EXPECT_THAT(msg, HasSubstr("holds 5")) << msg;
}

TEST(IdxErrors, TrailingBytes) {
  TempDir dir;
  const std::string path = dir / "long.idx";
  write_bytes(path, {0, 0, 8, 1, 0, 0, 0, 2, 7, 8, 9});  // announces 2 bytes, holds 3
  const auto msg = read_error(path);
  EXPECT_THAT(msg, HasSubstr(path)) << msg;
  EXPECT_THAT(msg, HasSubstr("trailing")) << msg;
}

TEST(IdxErrors, CorruptGzipStream) {
  TempDir dir;
  // Varied but compressible content, so the deflate stream has real Huffman-coded blocks.
  auto values = torch::arange(0, 64 * 64, torch::kLong).reshape({64, 64});
  values = (values * values + values * 13).remainder(251).to(torch::kUInt8);
  const std::string good = dir / "good.gz";
  write_idx(good, values);
  ASSERT_TRUE(torch::equal(read_idx(good), values));
  const std::string bytes = slurp(good);
  ASSERT_GT(bytes.size(), 200u);

  const std::string chopped = dir / "chopped.gz";
  std::ofstream(chopped, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_THAT(read_error(chopped), HasSubstr(chopped));

  std::string flipped_bytes = bytes;
  for (size_t i = bytes.size() / 2 - 8; i < bytes.size() / 2 + 8; ++i) flipped_bytes[i] ^= '\xff';
  const std::string flipped = dir / "flipped.gz";
  std::ofstream(flipped, std::ios::binary) << flipped_bytes;
  EXPECT_THAT(read_error(flipped), HasSubstr(flipped));

  std::string bad_crc = bytes;
  bad_crc[bytes.size() - 6] ^= '\x01';  // the CRC-32 in the 8-byte gzip trailer
  const std::string crc = dir / "crc.gz";
  std::ofstream(crc, std::ios::binary) << bad_crc;
  EXPECT_THAT(read_error(crc), HasSubstr(crc));
}

}  // namespace
