// The runtime's kernels: every node type's arithmetic, and the loop over a network's nodes.
//
// This file is compiled up to three times (lib/CMakeLists.txt): as itself, for any CPU, with
// KDISTILL_RUNTIME_KERNELS = generic; and on x86-64 through kernels_avx2.cpp (-mavx2 -mfma) and
// kernels_avx512.cpp (-mavx512f/dq/vl/bw -mfma), where KDISTILL_RUNTIME_KERNELS names the build
// and the macro `Eigen` renames Eigen's namespace, so that the builds of Eigen's templates never
// meet at link time. runtime.cpp picks one when a model is loaded.

#ifndef KDISTILL_RUNTIME_KERNELS
#define KDISTILL_RUNTIME_KERNELS generic
#endif

// Each predict() runs on its caller's thread; concurrency comes from callers sharing one Model,
// so Eigen must not start threads of its own.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "runtime/network.h"

namespace kdistill::runtime::detail::KDISTILL_RUNTIME_KERNELS {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// dst = lhs * rhs in tiles small enough that Eigen packs each operand block on the stack (it
// takes blocks over EIGEN_STACK_ALLOCATION_LIMIT, 128 KiB, from the heap, and the block sizes it
// picks depend on the caches the CPU reports). Every tile has at most kPackFloats floats of
// either operand, so predict() allocates nothing whatever the layer's size.
constexpr Eigen::Index kPackFloats = 32768;  // 128 KiB, the limit itself

template <typename Dst, typename Lhs, typename Rhs>
void product(Dst dst, const Lhs& lhs, const Rhs& rhs) {
  using Eigen::Index;
  const Index rows = lhs.rows(), depth = lhs.cols(), cols = rhs.cols();
  const Index kt = std::min<Index>(depth, kPackFloats / 8);
  const Index tile = std::max<Index>(8, kPackFloats / kt / 8 * 8);  // rows of lhs, columns of rhs
  // A matrix-vector product packs nothing (a copy of the vector, if any, is small).
  if (rows == 1 || cols == 1 || (rows <= tile && cols <= tile && depth == kt)) {
    dst.noalias() = lhs * rhs;
    return;
  }
  for (Index k = 0; k < depth; k += kt) {
    const Index kk = std::min(kt, depth - k);
    for (Index i = 0; i < rows; i += tile) {
      const Index ii = std::min(tile, rows - i);
      for (Index j = 0; j < cols; j += tile) {
        const Index jj = std::min(tile, cols - j);
        auto out = dst.block(i, j, ii, jj);
        if (k == 0) {
          out.noalias() = lhs.block(i, k, ii, kk) * rhs.block(k, j, kk, jj);
        } else {
          out.noalias() += lhs.block(i, k, ii, kk) * rhs.block(k, j, kk, jj);
        }
      }
    }
  }
}

// y = x W^T + b over n rows.
void linear(const Node& l, int64_t in_size, const float* x, int64_t n, float* y) {
  Eigen::Map<const RowMatrix> in(x, n, in_size);
  Eigen::Map<const RowMatrix> w(l.weight.data(), l.out_size, in_size);
  Eigen::Map<const Eigen::RowVectorXf> b(l.bias.data(), l.out_size);
  Eigen::Map<RowMatrix> out(y, n, l.out_size);
  product(Eigen::Ref<RowMatrix>(out), in, w.transpose());
  out.rowwise() += b;
}

// The output columns [j0, j1) whose input column j * stride + offset lies inside [0, width).
void inside(int64_t out_width, int64_t stride, int64_t offset, int64_t width, int64_t& j0, int64_t& j1) {
  j0 = 0;
  j1 = out_width;
  while (j0 < out_width && j0 * stride + offset < 0) ++j0;
  while (j1 > j0 && (j1 - 1) * stride + offset >= width) --j1;
}

// Lays out the receptive fields of `channels` planes of [H, W] as the columns of a
// [channels * kh * kw, OH * OW] matrix (zeros where the window covers padding).
void im2col(const Node& l, const std::vector<int64_t>& in, int64_t channels, const float* x, float* col) {
  const int64_t h = in[1], w = in[2];
  const int64_t oh = l.out_shape[1], ow = l.out_shape[2];
  float* row = col;
  if (l.sh == 1 && l.sw == 1 && ow == w) {
    // Stride 1 with 'same' width (a 3x3 convolution padded by 1, say): each row of the matrix is
    // the plane shifted by one offset, copied at once; then the rows and columns that fall in
    // the padding are zeroed.
    const int64_t plane = h * w;
    for (int64_t c = 0; c < channels; ++c) {
      const float* src = x + c * plane;
      for (int64_t ki = 0; ki < l.kh; ++ki) {
        const int64_t dy = ki * l.dh - l.ph;
        const int64_t i0 = std::max<int64_t>(0, -dy), i1 = std::max(i0, std::min(oh, h - dy));
        for (int64_t kj = 0; kj < l.kw; ++kj, row += oh * ow) {
          const int64_t dx = kj * l.dw - l.pw;
          std::fill(row, row + i0 * ow, 0.0f);
          std::fill(row + i1 * ow, row + oh * ow, 0.0f);
          // dst[i * ow + j] = src[(i + dy) * w + j + dx] for the rows inside, clipped to the plane.
          int64_t begin = i0 * ow, end = i1 * ow;
          const int64_t shift = dy * w + dx;
          begin = std::max(begin, -shift);
          end = std::min(end, plane - shift);
          if (end > begin) std::copy(src + begin + shift, src + end + shift, row + begin);
          int64_t j0 = 0, j1 = 0;
          inside(ow, 1, dx, w, j0, j1);
          for (int64_t i = i0; i < i1; ++i) {
            float* dst = row + i * ow;
            std::fill(dst, dst + j0, 0.0f);
            std::fill(dst + j1, dst + ow, 0.0f);
          }
        }
      }
    }
    return;
  }
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t ki = 0; ki < l.kh; ++ki) {
      for (int64_t kj = 0; kj < l.kw; ++kj, row += oh * ow) {
        const int64_t offset = kj * l.dw - l.pw;
        int64_t j0 = 0, j1 = 0;
        inside(ow, l.sw, offset, w, j0, j1);
        for (int64_t i = 0; i < oh; ++i) {
          float* dst = row + i * ow;
          const int64_t ih = i * l.sh - l.ph + ki * l.dh;
          if (ih < 0 || ih >= h) {
            std::fill(dst, dst + ow, 0.0f);
            continue;
          }
          const float* src = x + (c * h + ih) * w + offset;
          std::fill(dst, dst + j0, 0.0f);
          if (l.sw == 1) {
            std::copy(src + j0, src + j1, dst + j0);
          } else {
            for (int64_t j = j0; j < j1; ++j) dst[j] = src[j * l.sw];
          }
          std::fill(dst + j1, dst + ow, 0.0f);
        }
      }
    }
  }
}

// One input plane per output channel (depthwise and its channel multipliers): a direct loop, one
// kernel tap at a time over the output rows it reaches.
void depthwise(const Node& l, const std::vector<int64_t>& in, const float* x, float* y) {
  const int64_t h = in[1], w = in[2];
  const int64_t out_channels = l.out_shape[0], oh = l.out_shape[1], ow = l.out_shape[2];
  const int64_t per_group = out_channels / l.groups;
  for (int64_t oc = 0; oc < out_channels; ++oc) {
    const float* plane = x + (oc / per_group) * h * w;
    float* out = y + oc * oh * ow;
    std::fill(out, out + oh * ow, l.bias[static_cast<size_t>(oc)]);
    const float* taps = l.weight.data() + oc * l.kh * l.kw;
    for (int64_t ki = 0; ki < l.kh; ++ki) {
      for (int64_t kj = 0; kj < l.kw; ++kj) {
        const float tap = taps[ki * l.kw + kj];
        const int64_t offset = kj * l.dw - l.pw;
        int64_t j0 = 0, j1 = 0;
        inside(ow, l.sw, offset, w, j0, j1);
        for (int64_t i = 0; i < oh; ++i) {
          const int64_t ih = i * l.sh - l.ph + ki * l.dh;
          if (ih < 0 || ih >= h) continue;
          const float* src = plane + ih * w + offset;
          float* dst = out + i * ow;
          if (l.sw == 1) {
            for (int64_t j = j0; j < j1; ++j) dst[j] += tap * src[j];
          } else {
            for (int64_t j = j0; j < j1; ++j) dst[j] += tap * src[j * l.sw];
          }
        }
      }
    }
  }
}

// Per sample and group: [out / g, C / g * kh * kw] x [C / g * kh * kw, OH * OW] + b.
void conv2d(const Node& l, const std::vector<int64_t>& in, int64_t in_size, const float* x, int64_t n, float* y,
            float* col) {
  const int64_t out_channels = l.out_shape[0], positions = l.out_shape[1] * l.out_shape[2];
  const int64_t group_in = in[0] / l.groups, group_out = out_channels / l.groups;
  const int64_t depth = group_in * l.kh * l.kw;
  const bool pointwise = l.kh == 1 && l.kw == 1 && l.sh == 1 && l.sw == 1 && l.ph == 0 && l.pw == 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* sample = x + i * in_size;
    float* out_sample = y + i * l.out_size;
    if (group_in == 1 && l.groups > 1 && !pointwise) {
      depthwise(l, in, sample, out_sample);
      continue;
    }
    for (int64_t g = 0; g < l.groups; ++g) {
      const float* planes = sample + g * group_in * in[1] * in[2];
      if (!pointwise) im2col(l, in, group_in, planes, col);
      Eigen::Map<const RowMatrix> cols(pointwise ? planes : col, depth, positions);
      Eigen::Map<const RowMatrix> w(l.weight.data() + g * group_out * depth, group_out, depth);
      Eigen::Map<const Eigen::VectorXf> b(l.bias.data() + g * group_out, group_out);
      Eigen::Map<RowMatrix> out(out_sample + g * group_out * positions, group_out, positions);
      product(Eigen::Ref<RowMatrix>(out), w, cols);
      for (int64_t c = 0; c < group_out; ++c) out.row(c).array() += b[c];
    }
  }
}

void pool2d(const Node& l, const std::vector<int64_t>& in, const float* x, int64_t n, float* y) {
  const int64_t planes = n * in[0], h = in[1], w = in[2];
  const int64_t oh = l.out_shape[1], ow = l.out_shape[2];
  const bool max = l.op == Op::kMaxPool2d;
  const float inv_area = 1.0f / static_cast<float>(l.kh * l.kw);
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = x + p * h * w;
    float* dst = y + p * oh * ow;
    for (int64_t i = 0; i < oh; ++i) {
      const int64_t h0 = i * l.sh - l.ph;
      const int64_t hs = std::max<int64_t>(h0, 0), he = std::min(h0 + l.kh, h);
      for (int64_t j = 0; j < ow; ++j) {
        const int64_t w0 = j * l.sw - l.pw;
        const int64_t ws = std::max<int64_t>(w0, 0), we = std::min(w0 + l.kw, w);
        float acc = max ? -std::numeric_limits<float>::infinity() : 0.0f;
        for (int64_t a = hs; a < he; ++a) {
          for (int64_t b = ws; b < we; ++b) {
            const float v = src[a * w + b];
            acc = max ? (v > acc || std::isnan(v) ? v : acc) : acc + v;
          }
        }
        if (!max) acc *= l.count_include_pad ? inv_area : 1.0f / static_cast<float>((he - hs) * (we - ws));
        dst[i * ow + j] = acc;
      }
    }
  }
}

// Elementwise activations; `y` may be `x`. The formulas are LibTorch's (exact-erf GELU by default).
void activation(const Node& l, const float* x, int64_t count, float* y) {
  constexpr float kSqrtHalf = 0.70710678118654752440f;
  constexpr float kSqrtTwoOverPi = 0.79788456080286535588f;
  auto hard = [](float v) { return std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f; };
  switch (l.op) {
    case Op::kReLU:
      for (int64_t i = 0; i < count; ++i) y[i] = x[i] > 0.0f ? x[i] : (std::isnan(x[i]) ? x[i] : 0.0f);
      break;
    case Op::kHardtanh:
      for (int64_t i = 0; i < count; ++i) y[i] = std::isnan(x[i]) ? x[i] : std::min(std::max(x[i], l.lo), l.hi);
      break;
    case Op::kTanh:
      for (int64_t i = 0; i < count; ++i) y[i] = std::tanh(x[i]);
      break;
    case Op::kSigmoid:
      for (int64_t i = 0; i < count; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
      break;
    case Op::kSiLU:
      for (int64_t i = 0; i < count; ++i) y[i] = x[i] / (1.0f + std::exp(-x[i]));
      break;
    case Op::kHardswish:
      for (int64_t i = 0; i < count; ++i) y[i] = x[i] * hard(x[i]);
      break;
    case Op::kHardsigmoid:
      for (int64_t i = 0; i < count; ++i) y[i] = hard(x[i]);
      break;
    case Op::kGELU:
      for (int64_t i = 0; i < count; ++i) y[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * kSqrtHalf));
      break;
    case Op::kGELUTanh:
      for (int64_t i = 0; i < count; ++i) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.0f + std::tanh(kSqrtTwoOverPi * (v + 0.044715f * v * v * v)));
      }
      break;
    default:
      break;
  }
}

// Add or Mul of two values over n samples; one may be one value per channel of the other.
void binary(const Node& l, const float* a, int64_t a_size, const float* b, int64_t b_size, int64_t n, float* y) {
  const bool add = l.op == Op::kAdd;
  if (a_size == b_size) {
    const int64_t count = n * a_size;
    if (add) {
      for (int64_t i = 0; i < count; ++i) y[i] = a[i] + b[i];
    } else {
      for (int64_t i = 0; i < count; ++i) y[i] = a[i] * b[i];
    }
    return;
  }
  const bool a_small = a_size < b_size;
  const float* big = a_small ? b : a;
  const float* small = a_small ? a : b;
  const int64_t channels = std::min(a_size, b_size), inner = l.out_size / channels;
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t c = 0; c < channels; ++c) {
      const float v = small[s * channels + c];
      const float* src = big + (s * channels + c) * inner;
      float* dst = y + (s * channels + c) * inner;
      if (add) {
        for (int64_t i = 0; i < inner; ++i) dst[i] = src[i] + v;
      } else {
        for (int64_t i = 0; i < inner; ++i) dst[i] = src[i] * v;
      }
    }
  }
}

}  // namespace

const float* run(const Network& net, const float* x, int64_t n, Scratch& s) {
  auto buffer = [&](size_t value) { return s.slots[static_cast<size_t>(net.slot[value])].data(); };
  auto& values = s.values;
  values[0] = x;
  if (net.normalise) {
    float* dst = buffer(0);
    const int64_t count = n * net.input_size;
    for (int64_t i = 0; i < count; ++i) dst[i] = (x[i] - net.mean_f) / net.stddev_f;
    values[0] = dst;
  }
  for (size_t k = 0; k < net.nodes.size(); ++k) {
    const Node& l = net.nodes[k];
    const auto in0 = static_cast<size_t>(l.inputs[0]);
    const float* cur = values[in0];
    if (l.op == Op::kReshape) {  // a row-major sample is the same floats in any shape
      values[k + 1] = cur;
      continue;
    }
    float* dst = buffer(k + 1);
    const auto& in = net.shapes[in0];
    const int64_t in_size = net.sizes[in0];
    switch (l.op) {
      case Op::kLinear:
        linear(l, in_size, cur, n, dst);
        break;
      case Op::kConv2d:
        conv2d(l, in, in_size, cur, n, dst, s.col.data());
        break;
      case Op::kMaxPool2d:
      case Op::kAvgPool2d:
        pool2d(l, in, cur, n, dst);
        break;
      case Op::kGlobalAvgPool2d: {
        const int64_t planes = n * in[0], area = in[1] * in[2];
        for (int64_t p = 0; p < planes; ++p) {
          Eigen::Map<const Eigen::VectorXf> plane(cur + p * area, area);
          dst[p] = plane.mean();
        }
        break;
      }
      case Op::kAffine: {
        const int64_t channels = in[0], inner = in_size / channels;
        for (int64_t i = 0; i < n * channels; ++i) {
          const auto c = static_cast<size_t>(i % channels);
          const float w = l.weight[c], b = l.bias[c];
          for (int64_t j = 0; j < inner; ++j) dst[i * inner + j] = cur[i * inner + j] * w + b;
        }
        break;
      }
      case Op::kAdd:
      case Op::kMul: {
        const auto in1 = static_cast<size_t>(l.inputs[1]);
        binary(l, cur, in_size, values[in1], net.sizes[in1], n, dst);
        break;
      }
      case Op::kConcat:
        for (int64_t i = 0; i < n; ++i) {
          float* out = dst + i * l.out_size;
          for (auto v : l.inputs) {
            const auto size = net.sizes[static_cast<size_t>(v)];
            std::memcpy(out, values[static_cast<size_t>(v)] + i * size, sizeof(float) * static_cast<size_t>(size));
            out += size;
          }
        }
        break;
      default:  // activations, in place where the planner put them there
        activation(l, cur, n * in_size, dst);
        break;
    }
    values[k + 1] = dst;
  }
  return values[net.nodes.size()];
}


}  // namespace kdistill::runtime::detail::KDISTILL_RUNTIME_KERNELS
