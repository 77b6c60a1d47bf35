#include "kdistill/data/idx.h"

#include <libdeflate.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <vector>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "core/huge_pages.h"

namespace kdistill::data {
namespace {

constexpr int kMaxDims = 4;

// gzread reads gzip streams and, transparently, plain files: one code path for both.
class GzFile {
 public:
  GzFile(const std::string& path, const char* mode) : path_(path), file_(gzopen(path.c_str(), mode)) {
    if (!file_) fail("read_idx: cannot open ", path, ": ", std::strerror(errno));
  }
  ~GzFile() {
    if (file_) gzclose(file_);
  }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads exactly n bytes or fails, naming what was being read.
  void read_exact(void* dst, size_t n, const char* what) {
    const int64_t got = read_some(dst, n, what);
    if (got < static_cast<int64_t>(n)) {
      fail("read_idx: ", path_, ": file is truncated: expected ", n, " bytes of ", what, ", got ", got);
    }
  }

  // Reads up to n bytes, fewer only at the end of the data; returns how many.
  int64_t read_some(void* dst, size_t n, const char* what) {
    auto* out = static_cast<unsigned char*>(dst);
    size_t done = 0;
    while (done < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - done, 1u << 30));
      int got = gzread(file_, out + done, chunk);
      if (got < 0) fail("read_idx: ", path_, ": corrupt gzip stream while reading ", what, " (", error(), ")");
      if (got == 0) break;
      done += static_cast<size_t>(got);
    }
    return static_cast<int64_t>(done);
  }

  bool at_end() {
    unsigned char extra;
    int got = gzread(file_, &extra, 1);
    if (got < 0) fail("read_idx: ", path_, ": corrupt gzip stream at the end of the data (", error(), ")");
    return got == 0;
  }

  gzFile get() { return file_; }

 private:
  std::string error() {
    int code = 0;
    const char* msg = gzerror(file_, &code);
    return msg ? msg : "unknown error";
  }
  std::string path_;
  gzFile file_;
};

uint32_t big_endian(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

// DEFLATE expands at most about 1032-fold: a gzip trailer that announces more than this is lying.
constexpr uint64_t kMaxInflation = 1032;

// The fast path for the common case, a well-formed single-member .gz file: libdeflate inflates
// the whole file at once, about 2x faster than zlib's stream (docs/performance.md#loading-data),
// into memory that may sit on huge pages. Anything unexpected (not gzip, several members, a
// trailer or header that does not match, a corrupt stream) returns nothing, and the streaming
// reader below reads the file again and says precisely what is wrong.
std::optional<torch::Tensor> read_whole_gzip(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return std::nullopt;
  const auto size = static_cast<uint64_t>(in.tellg());
  if (size < 18) return std::nullopt;  // 10-byte header + 8-byte trailer
  std::unique_ptr<unsigned char[]> holder(new unsigned char[size]);  // not zeroed: the file fills it
  unsigned char* packed = holder.get();
  in.seekg(0);
  // A plain file is not read twice: the gzip magic number first.
  if (!in.read(reinterpret_cast<char*>(packed), 2) || packed[0] != 0x1f || packed[1] != 0x8b) {
    return std::nullopt;
  }
  if (!in.read(reinterpret_cast<char*>(packed) + 2, static_cast<std::streamsize>(size - 2))) return std::nullopt;
  const unsigned char* t = packed + size - 4;  // ISIZE: the inflated length mod 2^32
  const uint64_t inflated = uint64_t{t[0]} | (uint64_t{t[1]} << 8) | (uint64_t{t[2]} << 16) | (uint64_t{t[3]} << 24);
  if (inflated < 8 || inflated > kMaxInflation * size) return std::nullopt;
  // Pages of the buffer are touched only as the stream fills them: a lying trailer costs address
  // space, not memory.
  auto buffer = detail::empty_on_huge_pages({static_cast<int64_t>(inflated)}, torch::kUInt8);
  auto* out = buffer.data_ptr<uint8_t>();
  std::unique_ptr<libdeflate_decompressor, decltype(&libdeflate_free_decompressor)> inflater(
      libdeflate_alloc_decompressor(), &libdeflate_free_decompressor);
  if (!inflater) return std::nullopt;
  size_t used = 0, produced = 0;
  if (libdeflate_gzip_decompress_ex(inflater.get(), packed, size, out, inflated, &used, &produced) !=
          LIBDEFLATE_SUCCESS ||
      used != size || produced != inflated) {
    return std::nullopt;
  }
  const int ndim = out[3];
  if (out[0] != 0 || out[1] != 0 || out[2] != 0x08 || ndim < 1 || ndim > kMaxDims) return std::nullopt;
  const uint64_t header = 4 + 4 * static_cast<uint64_t>(ndim);
  if (inflated < header) return std::nullopt;
  std::vector<int64_t> dims(ndim);
  uint64_t count = 1;
  for (int i = 0; i < ndim; ++i) {
    dims[i] = big_endian(out + 4 + 4 * i);
    if (dims[i] == 0) return std::nullopt;
    count *= static_cast<uint64_t>(dims[i]);  // count <= inflated < 2^32, dims < 2^32: no overflow
    if (count > inflated) return std::nullopt;
  }
  if (header + count != inflated) return std::nullopt;
  return buffer.narrow(0, static_cast<int64_t>(header), static_cast<int64_t>(count)).view(dims);
}

}  // namespace

torch::Tensor read_idx(const std::string& path) {
  if (auto whole = read_whole_gzip(path)) return *whole;
  GzFile file(path, "rb");
  std::array<unsigned char, 4> magic{};
  file.read_exact(magic.data(), 4, "the magic number");
  const int type = magic[2];
  const int ndim = magic[3];
  if (magic[0] != 0 || magic[1] != 0 || type != 0x08 || ndim < 1 || ndim > kMaxDims) {
    fail("read_idx: ", path, ": not an unsigned-byte IDX file: expected magic 00 00 08 0N with N in [1, ",
         kMaxDims, "], got ", std::hex, int{magic[0]}, " ", int{magic[1]}, " ", type, " ", ndim);
  }
  std::vector<int64_t> dims(ndim);
  int64_t count = 1;
  for (int i = 0; i < ndim; ++i) {
    std::array<unsigned char, 4> b{};
    file.read_exact(b.data(), 4, "the dimensions");
    dims[i] = big_endian(b.data());
    check(dims[i] > 0, "read_idx: ", path, ": dimension ", i, " is 0");
    check(count <= (int64_t{1} << 40) / dims[i], "read_idx: ", path, ": dimensions ", dims, " are too large");
    count *= dims[i];
  }
  // The header is not trusted with memory: a 19-byte file may announce gigabytes. The payload
  // grows as bytes actually arrive (chunks of at least 64 MiB, doubling), so a truncated file fails
  // having allocated at most about twice what it holds plus 64 MiB (a growing resize briefly holds
  // the old and the new buffer). Fashion-MNIST's 47 MB fits in the first chunk.
  constexpr int64_t kMinChunk = int64_t{64} << 20;
  auto values = torch::empty({0}, torch::kUInt8);
  int64_t have = 0;
  while (have < count) {
    const int64_t want = std::min(count - have, std::max(kMinChunk, have));
    values.resize_({have + want});
    const int64_t got = file.read_some(values.data_ptr<uint8_t>() + have, static_cast<size_t>(want), "the payload");
    have += got;
    check(got == want, "read_idx: ", path, ": file is truncated: the header ", dims, " announces ", count,
          " payload bytes, the file holds ", have);
  }
  check(file.at_end(), "read_idx: ", path, ": trailing bytes after the ", count, " payload bytes that the header ",
        dims, " announces");
  return values.view(dims);
}

void write_idx(const std::string& path, const torch::Tensor& values) {
  check(values.scalar_type() == torch::kUInt8, "write_idx: values must be uint8, got ", values.scalar_type());
  check(values.dim() >= 1 && values.dim() <= kMaxDims, "write_idx: values must have 1 to ", kMaxDims,
        " dimensions, got ", values.dim());
  const bool gz = path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  gzFile f = gzopen(path.c_str(), gz ? "wb6" : "wbT");
  check(f != nullptr, "write_idx: cannot open ", path, " for writing: ", std::strerror(errno));
  std::vector<unsigned char> header = {0, 0, 0x08, static_cast<unsigned char>(values.dim())};
  for (auto d : values.sizes()) {
    for (int shift = 24; shift >= 0; shift -= 8) header.push_back(static_cast<unsigned char>((d >> shift) & 0xff));
  }
  auto data = values.contiguous();
  bool ok = gzwrite(f, header.data(), static_cast<unsigned>(header.size())) == static_cast<int>(header.size()) &&
            gzwrite(f, data.data_ptr<uint8_t>(), static_cast<unsigned>(data.numel())) == data.numel();
  ok = (gzclose(f) == Z_OK) && ok;
  check(ok, "write_idx: failed to write ", path);
}

}  // namespace kdistill::data
