#pragma once

// The runtime model file, shared by its writer (export/export.cpp, LibTorch) and its reader
// (runtime/runtime.cpp, Eigen only). Private to the library and free of LibTorch, so both sides
// agree on the format name, the shape arithmetic and its bounds.

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "kdistill/core/error.h"

namespace kdistill::runtime_format {

/// The root attribute `format` of the files export_model writes: a graph of nodes (the layout is
/// in kdistill/export/export.h).
inline constexpr const char* kFormat = "kdistill-runtime-2";
/// The first format, a chain of layers in group `layers`: still read.
inline constexpr const char* kFormatChain = "kdistill-runtime-1";

/// Node types, as the file names them. Both sides use these lists in their messages.
inline constexpr const char* kNodeTypes =
    "Linear, Conv2d (grouped, depthwise, strided, padded, dilated), Affine (a BatchNorm not folded), ReLU, "
    "Hardtanh (ReLU6), GELU, SiLU, Hardswish, Hardsigmoid, Tanh, Sigmoid, MaxPool2d, AvgPool2d, "
    "GlobalAvgPool2d, Flatten, Reshape, Add, Mul, Concat";

/// "[1, 28, 28]".
inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

/// Output length of a convolution or pooling window sliding over `size` (padding included).
/// Throws kdistill::Error starting with `where` when the window does not fit or a parameter is
/// out of range.
inline int64_t slide(int64_t size, int64_t kernel, int64_t stride, int64_t pad, const std::string& where) {
  // Bounded first, so that the arithmetic below cannot overflow (found by fuzz_runtime: a padding
  // of 2^62 in a crafted file).
  constexpr int64_t kMaxWindow = int64_t{1} << 20;
  check(kernel > 0 && stride > 0 && pad >= 0 && kernel <= kMaxWindow && stride <= kMaxWindow && pad <= kMaxWindow,
        where, "kernel ", kernel, ", stride ", stride, " and padding ", pad, " must be in [1, ", kMaxWindow, "], [1, ",
        kMaxWindow, "] and [0, ", kMaxWindow, "]");
  check(size + 2 * pad >= kernel, where, "kernel ", kernel, " is larger than its input (", size, " + padding ",
        2 * pad, ")");
  return (size + 2 * pad - kernel) / stride + 1;
}

/// Whether `small` is one value per channel of `big`: the same rank, big's channels, ones
/// elsewhere ([C, 1, 1] against [C, H, W]). Add and Mul take equal shapes or this.
inline bool per_channel_of(const std::vector<int64_t>& small, const std::vector<int64_t>& big) {
  if (small.size() != big.size() || small.empty() || small[0] != big[0]) return false;
  return std::all_of(small.begin() + 1, small.end(), [](int64_t d) { return d == 1; });
}

}  // namespace kdistill::runtime_format
