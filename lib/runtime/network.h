#pragma once

// The runtime's loaded network and the kernels that run it, shared by the loader (runtime.cpp)
// and the kernels (kernels.cpp, compiled once for any CPU and, on x86-64, again with AVX2 + FMA
// and with AVX-512, one picked when the model is loaded). Private to the library; free of Eigen, so
// that each kernel build includes Eigen under its own namespace.

#include <cstdint>
#include <string>
#include <vector>

namespace kdistill::runtime::detail {

enum class Op {
  kReshape, kLinear, kConv2d, kAffine, kMaxPool2d, kAvgPool2d, kGlobalAvgPool2d,
  kReLU, kHardtanh, kGELU, kGELUTanh, kSiLU, kHardswish, kHardsigmoid, kTanh, kSigmoid,
  kAdd, kMul, kConcat
};

struct Scratch;

/// One node as predict() runs it. Values are numbered: 0 is the (normalised) input, k + 1 the
/// output of node k. Shapes are per sample; activations are row-major.
struct Node {
  Op op = Op::kReshape;
  std::string type;             // the file's name for it, for describe()
  std::vector<int64_t> inputs;  // value numbers, each < this node's own output value
  std::vector<int64_t> out_shape;
  int64_t out_size = 0;
  std::vector<float> weight, bias;  // Linear [out, in]; Conv2d [out, in / groups, kh, kw]; Affine [C]; bias [out]
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1, groups = 1;  // Conv2d and pooling
  bool count_include_pad = true;  // AvgPool2d
  float lo = 0.0f, hi = 0.0f;     // Hardtanh
  int64_t col_size = 0;           // im2col floats per sample and group (Conv2d)
};

struct Network {
  std::string path;
  std::string format;
  std::vector<int64_t> input_shape;
  int64_t input_size = 0;
  int64_t num_classes = 0;
  double mean = 0.0, stddev = 1.0;
  bool normalise = false;
  float mean_f = 0.0f, stddev_f = 1.0f;
  std::vector<Node> nodes;
  std::vector<std::vector<int64_t>> shapes;  // per value
  std::vector<int64_t> sizes;                // per value: floats per sample
  std::vector<int> slot;                     // per value: its buffer; -1 is the caller's input
  std::vector<int64_t> slot_size;            // per buffer: floats per sample
  int64_t max_col = 0;                       // floats of the largest im2col buffer
  const char* kernels = "generic";           // which build of the kernels runs it
  const float* (*run)(const Network&, const float*, int64_t, Scratch&) = nullptr;
};


/// Working memory of one thread, grown to the largest size needed and then reused.
struct Scratch {
  std::vector<std::vector<float>> slots;
  std::vector<float> col;
  std::vector<const float*> values;
};

/// Runs `n` inputs (row-major, n <= the chunk predict() sized `s` for) through the network;
/// returns where the logits are (inside `s`, or `x` for a network of reshapes only). One
/// definition per build of the kernels.
namespace generic {
const float* run(const Network& net, const float* x, int64_t n, Scratch& s);
}
namespace avx2 {
const float* run(const Network& net, const float* x, int64_t n, Scratch& s);
}
namespace avx512 {
const float* run(const Network& net, const float* x, int64_t n, Scratch& s);
}

}  // namespace kdistill::runtime::detail
