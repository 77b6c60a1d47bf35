#include "kdistill/data/tokens.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "io/hdf5_util.h"
#include "kdistill/core/error.h"

namespace kdistill::data {
namespace fs = std::filesystem;

TensorDataset token_windows(const torch::Tensor& tokens, const torch::Tensor& mask, TokenOptions options,
                            std::string name) {
  constexpr const char* fn = "token_windows";
  check(tokens.defined() && tokens.dim() == 2 && tokens.size(1) >= 2, fn,
        ": tokens must be [N, L + 1] with L >= 1, got shape ", tokens.defined() ? tokens.sizes() : torch::IntArrayRef{});
  check(!tokens.is_floating_point() && tokens.scalar_type() != torch::kBool, fn, ": tokens must be integers, got ",
        tokens.scalar_type());
  check(options.vocab_size() >= 0, fn, ": vocab_size must be >= 0, got ", options.vocab_size());
  auto t = tokens.to(torch::kLong).contiguous();
  // A negative pad id (the default -1) is a mark, not a token: it may appear, and is fed as id 0.
  const auto pad = t.eq(options.pad_id());
  if (t.numel() > 0) {
    const auto real = t.masked_select(pad.logical_not());
    if (real.numel() > 0) {
      const auto lo = real.min().item<int64_t>(), hi = real.max().item<int64_t>();
      check(lo >= 0, fn, ": token ", lo, " is negative (pad_id is ", options.pad_id(), ")");
      if (options.vocab_size() > 0) {
        check(hi < options.vocab_size(), fn, ": token ", hi, " is outside the vocabulary [0, ", options.vocab_size(),
              ")");
      } else {
        options.vocab_size(std::max(hi + 1, options.pad_id() + 1));
      }
    }
  }
  check(options.pad_id() < 0 || options.vocab_size() == 0 || options.pad_id() < options.vocab_size(), fn,
        ": pad_id ", options.pad_id(), " is outside the vocabulary [0, ", options.vocab_size(), ")");
  auto keep = pad.logical_not();
  if (mask.defined()) {
    check(mask.sizes() == tokens.sizes(), fn, ": mask must have the tokens' shape ", tokens.sizes(), ", got ",
          mask.sizes());
    keep = keep.logical_and(mask.ne(0));
  }
  const int64_t length = t.size(1) - 1;
  auto inputs = t.narrow(1, 0, length).clone();
  if (options.pad_id() < 0) inputs.masked_fill_(pad.narrow(1, 0, length), 0);  // a mark is no embedding row
  auto targets = t.narrow(1, 1, length).masked_fill(keep.narrow(1, 1, length).logical_not(), -1);
  return TensorDataset(inputs, targets, std::max<int64_t>(options.vocab_size(), 1), std::move(name));
}

TensorDataset load_tokens_hdf5(const std::string& path, TokenOptions options) {
  constexpr const char* fn = "load_tokens_hdf5";
  auto file = detail::open_h5(fn, path);
  const std::string where = std::string(fn) + ": " + path;
  auto tokens = detail::read_dataset(fn, file, path, "tokens");
  check(!tokens.is_floating_point(), where, ":tokens must hold integers, got ", tokens.scalar_type());
  check(tokens.dim() == 2 && tokens.size(1) >= 2, where, ":tokens must be [N, L + 1] with L >= 1, got shape ",
        tokens.sizes());
  torch::Tensor mask;
  if (detail::has_dataset(file, "mask")) {
    mask = detail::read_dataset(fn, file, path, "mask");
    check(mask.sizes() == tokens.sizes(), where, ":mask must have the tokens' shape ", tokens.sizes(), ", got ",
          mask.sizes());
  }
  if (options.pad_id() < 0 && file.attrExists("pad_id")) options.pad_id(detail::read_int_attr(where, file, "pad_id"));
  if (options.vocab_size() == 0 && file.attrExists("vocab_size")) {
    options.vocab_size(detail::read_int_attr(where, file, "vocab_size"));
  }
  try {
    return token_windows(tokens, mask, options, fs::path(path).filename().string());
  } catch (const Error& e) {
    fail(where, ": ", e.what());
  }
}

torch::Tensor read_bytes(const std::vector<std::string>& files) {
  constexpr const char* fn = "read_bytes";
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i < files.size(); ++i) {
    std::ifstream in(files[i], std::ios::binary);
    check(in.good(), fn, ": cannot open ", files[i]);
    if (i > 0) bytes.push_back('\n');
    bytes.insert(bytes.end(), std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    check(!in.bad(), fn, ": cannot read ", files[i]);
  }
  check(!bytes.empty(), fn, ": no text in ", files.empty() ? std::string("an empty file list") : files.front());
  return torch::from_blob(bytes.data(), {static_cast<int64_t>(bytes.size())}, torch::kUInt8).to(torch::kLong);
}

torch::Tensor read_bytes(const std::string& path) {
  std::error_code ec;
  check(fs::exists(path, ec), "read_bytes: ", path, " does not exist");
  if (!fs::is_directory(path, ec)) return read_bytes(std::vector<std::string>{path});
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(path)) {
    // Symbolic links are skipped: Debian's fortunes has `x.u8 -> x`, which would read x twice.
    if (e.is_regular_file() && !e.is_symlink()) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  check(!files.empty(), "read_bytes: directory ", path, " holds no file");
  return read_bytes(files);
}

TensorDataset text_windows(const torch::Tensor& stream, int64_t length, int64_t vocab_size, std::string name) {
  constexpr const char* fn = "text_windows";
  check(length >= 1, fn, ": length must be >= 1, got ", length);
  check(stream.defined() && stream.dim() == 1, fn, ": the token stream must be 1-D");
  const int64_t windows = (stream.size(0) - 1) / length;
  check(windows >= 1, fn, ": ", stream.size(0), " tokens are fewer than one window of ", length + 1);
  // Windows overlap by one token: window w reads [w L, (w + 1) L] and predicts its last L tokens.
  auto rows = stream.to(torch::kLong).unfold(0, length + 1, length).narrow(0, 0, windows);
  return token_windows(rows, {}, TokenOptions().vocab_size(vocab_size), std::move(name));
}

}  // namespace kdistill::data
