#include "kdistill/runtime/runtime.h"

// Each predict() runs on its caller's thread; concurrency comes from callers sharing one Model,
// so Eigen must not start threads of its own.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>

#include <H5Cpp.h>

#include "io/hdf5_checked.h"
#include "runtime/format.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <sstream>
#include <tuple>

namespace kdistill::runtime {
namespace detail {

enum class Op { kFlatten, kLinear, kConv2d, kMaxPool2d, kAvgPool2d, kReLU, kGELU, kGELUTanh, kTanh, kSigmoid };

/// One layer as predict() runs it. Shapes are per sample; activations are row-major.
struct Layer {
  Op op = Op::kFlatten;
  std::string type;  // the file's name for it, for describe()
  std::vector<int64_t> in_shape, out_shape;
  int64_t in_size = 0, out_size = 0;
  std::vector<float> weight, bias;  // Linear [out, in]; Conv2d [out, in, kh, kw]; bias [out]
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;  // Conv2d and pooling
  int64_t col_size = 0;  // im2col floats per sample (Conv2d)
};

struct Network {
  std::string path;
  std::vector<int64_t> input_shape;
  int64_t input_size = 0;
  int64_t num_classes = 0;
  double mean = 0.0, stddev = 1.0;
  bool normalise = false;
  float mean_f = 0.0f, stddev_f = 1.0f;
  std::vector<Layer> layers;
  int64_t max_activation = 0;  // floats per sample of the largest input or output of a layer
  int64_t max_col = 0;         // floats of the largest im2col buffer
};

}  // namespace detail

namespace {

using detail::Layer;
using detail::Network;
using detail::Op;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

using runtime_format::kFormat;
using runtime_format::shape_str;
using runtime_format::slide;

constexpr const char* kSupported = "Flatten, Linear, Conv2d, MaxPool2d, AvgPool2d, ReLU, GELU, Tanh, Sigmoid";
// A bound on any one tensor or activation, so that a corrupt file fails cleanly instead of
// asking for terabytes.
constexpr int64_t kMaxElements = int64_t{1} << 31;
// Inputs are run through the layers this many at a time: it bounds the scratch buffers, keeps
// activations in cache, and keeps Eigen's packing buffers for the products of small students
// under its stack-allocation limit (so they are not taken from the heap either).
constexpr int64_t kChunk = 64;

int64_t product(const std::vector<int64_t>& shape, const std::string& where) {
  int64_t n = 1;
  for (auto d : shape) {
    check(d > 0, where, "dimensions must be > 0, got ", shape_str(shape));
    check(n <= kMaxElements / d, where, "shape ", shape_str(shape), " is too large");
    n *= d;
  }
  return n;
}

// ---- reading the file ---------------------------------------------------------------------

H5::Attribute open_attr(const H5::H5Object& obj, const std::string& name, const std::string& where) {
  check(obj.attrExists(name), where, "has no attribute '", name, "'");
  return obj.openAttribute(name);
}

std::string read_string(const H5::H5Object& obj, const std::string& name, const std::string& where) {
  return kdistill::detail::read_string_attribute(open_attr(obj, name, where), where + "attribute '" + name + "'");
}

std::vector<int64_t> read_ints(const H5::H5Object& obj, const std::string& name, const std::string& where) {
  H5::Attribute attr = open_attr(obj, name, where);
  check(attr.getTypeClass() == H5T_INTEGER, where, "attribute '", name, "' is not an integer");
  const auto n = attr.getSpace().getSimpleExtentNpoints();
  check(n >= 0 && n <= 16, where, "attribute '", name, "' has ", n, " values");
  std::vector<int64_t> values(static_cast<size_t>(n));
  if (n > 0) attr.read(H5::PredType::NATIVE_INT64, values.data());
  return values;
}

int64_t read_int(const H5::H5Object& obj, const std::string& name, const std::string& where) {
  auto values = read_ints(obj, name, where);
  check(values.size() == 1, where, "attribute '", name, "' must be one integer, got ", values.size(), " values");
  return values[0];
}

// A 2-D hyperparameter: [h, w], or one value for both.
std::pair<int64_t, int64_t> read_pair(const H5::H5Object& obj, const std::string& name, const std::string& where) {
  auto values = read_ints(obj, name, where);
  check(values.size() == 1 || values.size() == 2, where, "attribute '", name, "' must hold 1 or 2 integers, got ",
        values.size());
  return {values.front(), values.back()};
}

double read_double(const H5::H5Object& obj, const std::string& name, const std::string& where) {
  H5::Attribute attr = open_attr(obj, name, where);
  const auto cls = attr.getTypeClass();
  check(cls == H5T_FLOAT || cls == H5T_INTEGER, where, "attribute '", name, "' is not a number");
  check(attr.getSpace().getSimpleExtentNpoints() == 1, where, "attribute '", name, "' must be one number");
  double value = 0;
  attr.read(H5::PredType::NATIVE_DOUBLE, &value);
  return value;
}

bool has_child(const H5::Group& group, const std::string& name, H5O_type_t type) {
  return group.nameExists(name) && group.childObjType(name) == type;
}

std::vector<float> read_floats(const H5::Group& group, const std::string& name, const std::vector<int64_t>& shape,
                               const std::string& where) {
  check(has_child(group, name, H5O_TYPE_DATASET), where, "has no dataset '", name, "'");
  H5::DataSet ds = group.openDataSet(name);
  check(ds.getTypeClass() == H5T_FLOAT, where, "dataset '", name, "' is not floating point");
  H5::DataSpace space = ds.getSpace();
  const int rank = space.getSimpleExtentNdims();
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  if (rank > 0) space.getSimpleExtentDims(dims.data());
  const std::vector<int64_t> got(dims.begin(), dims.end());
  check(got == shape, where, "dataset '", name, "' has shape ", shape_str(got), ", expected ", shape_str(shape));
  kdistill::detail::check_stored(ds, dims, sizeof(float), group.getFileName(), where + "dataset '" + name + "'");
  std::vector<float> values(static_cast<size_t>(product(shape, where)));
  ds.read(values.data(), H5::PredType::NATIVE_FLOAT);
  for (float v : values) check(std::isfinite(v), where, "dataset '", name, "' holds a non-finite value (", v, ")");
  return values;
}

// Linear and Conv2d: `weight` of `shape`, and `bias` [out] (zeros when the file has none).
void read_weights(const H5::Group& group, const std::vector<int64_t>& shape, const std::string& where, Layer& l) {
  l.weight = read_floats(group, "weight", shape, where);
  if (group.nameExists("bias")) {
    l.bias = read_floats(group, "bias", {shape[0]}, where);
  } else {
    l.bias.assign(static_cast<size_t>(shape[0]), 0.0f);
  }
}

void need_image(const Layer& l, const std::string& where) {
  check(l.in_shape.size() == 3, where, "needs [C, H, W] inputs, got ", shape_str(l.in_shape));
}

// Reads layer `index` of the file named by `file` ("runtime::Model::load: PATH: "), whose input
// shape is already in `l.in_shape`.
void load_layer(const H5::Group& group, const std::string& file, int64_t index, Layer& l) {
  const std::string at = file + "layer " + std::to_string(index);
  l.type = read_string(group, "type", at + ": ");
  const std::string where = at + " (" + l.type + "): ";
  const auto& in = l.in_shape;
  if (l.type == "Linear") {
    l.op = Op::kLinear;
    check(in.size() == 1, where, "needs a flat input, got ", shape_str(in), " (a Flatten must come first)");
    const int64_t in_features = read_int(group, "in_features", where);
    const int64_t out_features = read_int(group, "out_features", where);
    check(in_features == in[0], where, "in_features is ", in_features, " but its input has ", in[0], " features");
    check(out_features > 0, where, "out_features must be > 0, got ", out_features);
    read_weights(group, {out_features, in_features}, where, l);
    l.out_shape = {out_features};
  } else if (l.type == "Conv2d") {
    l.op = Op::kConv2d;
    need_image(l, where);
    const int64_t in_channels = read_int(group, "in_channels", where);
    const int64_t out_channels = read_int(group, "out_channels", where);
    check(in_channels == in[0], where, "in_channels is ", in_channels, " but its input has ", in[0], " channels");
    check(out_channels > 0, where, "out_channels must be > 0, got ", out_channels);
    std::tie(l.kh, l.kw) = read_pair(group, "kernel_size", where);
    std::tie(l.sh, l.sw) = read_pair(group, "stride", where);
    std::tie(l.ph, l.pw) = read_pair(group, "padding", where);
    const int64_t oh = slide(in[1], l.kh, l.sh, l.ph, where), ow = slide(in[2], l.kw, l.sw, l.pw, where);
    read_weights(group, {out_channels, in_channels, l.kh, l.kw}, where, l);
    l.out_shape = {out_channels, oh, ow};
    l.col_size = product({in_channels * l.kh * l.kw, oh * ow}, where);
  } else if (l.type == "MaxPool2d" || l.type == "AvgPool2d") {
    l.op = l.type == "MaxPool2d" ? Op::kMaxPool2d : Op::kAvgPool2d;
    need_image(l, where);
    std::tie(l.kh, l.kw) = read_pair(group, "kernel_size", where);
    std::tie(l.sh, l.sw) = read_pair(group, "stride", where);
    if (group.attrExists("padding")) {
      const auto pad = read_pair(group, "padding", where);
      check(pad.first == 0 && pad.second == 0, where, "padding must be 0, got ", pad.first, "x", pad.second);
    }
    l.out_shape = {in[0], slide(in[1], l.kh, l.sh, 0, where), slide(in[2], l.kw, l.sw, 0, where)};
  } else if (l.type == "Flatten") {
    l.op = Op::kFlatten;
    l.out_shape = {product(in, where)};
  } else if (l.type == "ReLU" || l.type == "Tanh" || l.type == "Sigmoid" || l.type == "GELU") {
    l.op = l.type == "ReLU" ? Op::kReLU : l.type == "Tanh" ? Op::kTanh : l.type == "Sigmoid" ? Op::kSigmoid : Op::kGELU;
    if (l.op == Op::kGELU && group.attrExists("approximate")) {
      const auto approximate = read_string(group, "approximate", where);
      check(approximate == "none" || approximate == "tanh", where, "approximate must be \"none\" or \"tanh\", got \"",
            approximate, "\"");
      if (approximate == "tanh") l.op = Op::kGELUTanh;
    }
    l.out_shape = in;
  } else {
    fail(where, "unknown layer type \"", l.type, "\"; supported: ", kSupported);
  }
  l.in_size = product(in, where);
  l.out_size = product(l.out_shape, where);
}

std::shared_ptr<Network> read_network(const std::string& path) {
  const std::string where = "runtime::Model::load: " + path + ": ";
  check(H5::H5File::isHdf5(path), where, "not an HDF5 file");
  H5::H5File file(path, H5F_ACC_RDONLY);
  H5::Group root = file.openGroup("/");
  auto net = std::make_shared<Network>();
  net->path = path;
  check(root.attrExists("format"), where, "has no 'format' attribute: not a model written by kdistill::export_model");
  const auto format = read_string(root, "format", where);
  check(format == kFormat, where, "format is \"", format, "\", expected \"", kFormat, "\"");
  net->input_shape = read_ints(root, "input_shape", where);
  check(!net->input_shape.empty(), where, "input_shape is empty");
  net->input_size = product(net->input_shape, where + "input_shape: ");
  net->num_classes = read_int(root, "num_classes", where);
  check(net->num_classes > 0, where, "num_classes must be > 0, got ", net->num_classes);
  net->mean = read_double(root, "mean", where);
  net->stddev = read_double(root, "std", where);
  check(std::isfinite(net->mean), where, "mean must be finite, got ", net->mean);
  check(std::isfinite(net->stddev) && net->stddev > 0, where, "std must be finite and > 0, got ", net->stddev);
  net->normalise = net->mean != 0.0 || net->stddev != 1.0;
  net->mean_f = static_cast<float>(net->mean);
  net->stddev_f = static_cast<float>(net->stddev);

  check(has_child(root, "layers", H5O_TYPE_GROUP), where, "has no group 'layers'");
  H5::Group layers = root.openGroup("layers");
  const auto count = static_cast<int64_t>(layers.getNumObjs());
  check(count > 0, where, "group 'layers' is empty");
  std::vector<int64_t> shape = net->input_shape;
  net->max_activation = net->input_size;
  for (int64_t i = 0; i < count; ++i) {
    const std::string name = std::to_string(i);
    check(has_child(layers, name, H5O_TYPE_GROUP), where, "layers/", name, " is missing: expected groups 0 to ",
          count - 1);
    Layer l;
    l.in_shape = shape;
    load_layer(layers.openGroup(name), where, i, l);
    shape = l.out_shape;
    net->max_activation = std::max(net->max_activation, l.out_size);
    net->max_col = std::max(net->max_col, l.col_size);
    net->layers.push_back(std::move(l));
  }
  check(shape.size() == 1 && shape[0] == net->num_classes, where, "the last layer gives ", shape_str(shape),
        " per input, but num_classes is ", net->num_classes);
  check(net->max_activation <= kMaxElements / kChunk, where, "activations of ", net->max_activation,
        " floats per input are too large");
  return net;
}

// ---- running it ---------------------------------------------------------------------------

// Working memory of one thread, grown to the largest size needed and then reused.
struct Scratch {
  std::vector<float> a, b, col;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

void grow(std::vector<float>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
}

// y = x W^T + b over n rows.
void linear(const Layer& l, const float* x, int64_t n, float* y) {
  Eigen::Map<const RowMatrix> in(x, n, l.in_size);
  Eigen::Map<const RowMatrix> w(l.weight.data(), l.out_size, l.in_size);
  Eigen::Map<const Eigen::RowVectorXf> b(l.bias.data(), l.out_size);
  Eigen::Map<RowMatrix> out(y, n, l.out_size);
  out.noalias() = in * w.transpose();
  out.rowwise() += b;
}

// Lays out the receptive fields of one [C, H, W] sample as the columns of a
// [C * kh * kw, OH * OW] matrix (zeros where the window covers padding).
void im2col(const Layer& l, const float* x, float* col) {
  const int64_t channels = l.in_shape[0], h = l.in_shape[1], w = l.in_shape[2];
  const int64_t oh = l.out_shape[1], ow = l.out_shape[2];
  float* row = col;
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t ki = 0; ki < l.kh; ++ki) {
      for (int64_t kj = 0; kj < l.kw; ++kj, row += oh * ow) {
        for (int64_t i = 0; i < oh; ++i) {
          float* dst = row + i * ow;
          const int64_t ih = i * l.sh - l.ph + ki;
          if (ih < 0 || ih >= h) {
            std::fill(dst, dst + ow, 0.0f);
            continue;
          }
          const float* src = x + (c * h + ih) * w;
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t iw = j * l.sw - l.pw + kj;
            dst[j] = (iw >= 0 && iw < w) ? src[iw] : 0.0f;
          }
        }
      }
    }
  }
}

// Per sample: [out, C*kh*kw] x [C*kh*kw, OH*OW] + b, which is the [out, OH, OW] output.
void conv2d(const Layer& l, const float* x, int64_t n, float* y, float* col) {
  const int64_t out_channels = l.out_shape[0], positions = l.out_shape[1] * l.out_shape[2];
  const int64_t depth = l.in_shape[0] * l.kh * l.kw;
  const bool pointwise = l.kh == 1 && l.kw == 1 && l.sh == 1 && l.sw == 1 && l.ph == 0 && l.pw == 0;
  Eigen::Map<const RowMatrix> w(l.weight.data(), out_channels, depth);
  Eigen::Map<const Eigen::VectorXf> b(l.bias.data(), out_channels);
  for (int64_t i = 0; i < n; ++i) {
    const float* sample = x + i * l.in_size;
    if (!pointwise) im2col(l, sample, col);
    Eigen::Map<const RowMatrix> cols(pointwise ? sample : col, depth, positions);
    Eigen::Map<RowMatrix> out(y + i * l.out_size, out_channels, positions);
    out.noalias() = w * cols;
    out.colwise() += b;
  }
}

void pool2d(const Layer& l, const float* x, int64_t n, float* y) {
  const int64_t planes = n * l.in_shape[0], h = l.in_shape[1], w = l.in_shape[2];
  const int64_t oh = l.out_shape[1], ow = l.out_shape[2];
  const bool max = l.op == Op::kMaxPool2d;
  const float inv_area = 1.0f / static_cast<float>(l.kh * l.kw);
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = x + p * h * w;
    float* dst = y + p * oh * ow;
    for (int64_t i = 0; i < oh; ++i) {
      for (int64_t j = 0; j < ow; ++j) {
        const float* window = src + (i * l.sh) * w + j * l.sw;
        float acc = max ? -std::numeric_limits<float>::infinity() : 0.0f;
        for (int64_t ki = 0; ki < l.kh; ++ki) {
          for (int64_t kj = 0; kj < l.kw; ++kj) {
            const float v = window[ki * w + kj];
            acc = max ? (v > acc || std::isnan(v) ? v : acc) : acc + v;
          }
        }
        dst[i * ow + j] = max ? acc : acc * inv_area;
      }
    }
  }
}

// Elementwise activations; `y` may be `x`. The formulas are LibTorch's (exact-erf GELU by default).
void activation(Op op, const float* x, int64_t count, float* y) {
  constexpr float kSqrtHalf = 0.70710678118654752440f;
  constexpr float kSqrtTwoOverPi = 0.79788456080286535588f;
  switch (op) {
    case Op::kReLU:
      for (int64_t i = 0; i < count; ++i) y[i] = x[i] > 0.0f ? x[i] : (std::isnan(x[i]) ? x[i] : 0.0f);
      break;
    case Op::kTanh:
      for (int64_t i = 0; i < count; ++i) y[i] = std::tanh(x[i]);
      break;
    case Op::kSigmoid:
      for (int64_t i = 0; i < count; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
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

// Runs `n` inputs through the network; returns where the logits are (inside `s`).
const float* run(const Network& net, const float* x, int64_t n, Scratch& s) {
  float* buffers[2] = {s.a.data(), s.b.data()};
  int at = -1;  // which buffer holds the current activation; -1: the caller's input
  const float* cur = x;
  auto next = [&] { return buffers[at == 0 ? 1 : 0]; };
  if (net.normalise) {
    float* dst = next();
    const int64_t count = n * net.input_size;
    for (int64_t i = 0; i < count; ++i) dst[i] = (x[i] - net.mean_f) / net.stddev_f;
    cur = dst;
    at = 0;
  }
  for (const Layer& l : net.layers) {
    float* dst = nullptr;
    switch (l.op) {
      case Op::kFlatten:
        continue;  // a row-major [C, H, W] sample is already flat
      case Op::kLinear:
        dst = next();
        linear(l, cur, n, dst);
        break;
      case Op::kConv2d:
        dst = next();
        conv2d(l, cur, n, dst, s.col.data());
        break;
      case Op::kMaxPool2d:
      case Op::kAvgPool2d:
        dst = next();
        pool2d(l, cur, n, dst);
        break;
      default:  // activations run in place, except on the caller's input
        dst = at < 0 ? buffers[0] : buffers[at];
        activation(l.op, cur, n * l.in_size, dst);
        break;
    }
    at = dst == buffers[0] ? 0 : 1;
    cur = dst;
  }
  return cur;
}

}  // namespace

Model Model::load(const std::string& path) {
  std::error_code ec;
  check(std::filesystem::is_regular_file(path, ec), "runtime::Model::load: ", path,
        " does not exist or is not a file");
  // HDF5 is not thread-safe in every build: loads from several threads take turns. (predict()
  // never touches HDF5.)
  static std::mutex hdf5;
  const std::lock_guard<std::mutex> lock(hdf5);
  // HDF5 would print its error stack to stderr; its exceptions carry the message instead.
  H5::Exception::dontPrint();
  try {
    return Model(read_network(path));
  } catch (const H5::Exception& e) {
    fail("runtime::Model::load: ", path, ": cannot be read: ", e.getFuncName(), ": ", e.getDetailMsg());
  }
}

const std::vector<int64_t>& Model::input_shape() const { return net_->input_shape; }
int64_t Model::input_size() const { return net_->input_size; }
int64_t Model::num_classes() const { return net_->num_classes; }
double Model::mean() const { return net_->mean; }
double Model::stddev() const { return net_->stddev; }
int64_t Model::num_layers() const { return static_cast<int64_t>(net_->layers.size()); }

void Model::predict(const float* input, int batch, float* logits) const {
  check(batch >= 0, "runtime::Model::predict: batch must be >= 0, got ", batch);
  if (batch == 0) return;
  check(input != nullptr && logits != nullptr, "runtime::Model::predict: input and logits must not be null");
  const Network& net = *net_;
  Scratch& s = scratch();
  const int64_t chunk = std::min<int64_t>(batch, kChunk);
  grow(s.a, chunk * net.max_activation);
  grow(s.b, chunk * net.max_activation);
  grow(s.col, std::max<int64_t>(net.max_col, 1));
  for (int64_t start = 0; start < batch; start += chunk) {
    const int64_t n = std::min<int64_t>(chunk, batch - start);
    const float* out = run(net, input + start * net.input_size, n, s);
    std::memcpy(logits + start * net.num_classes, out, sizeof(float) * static_cast<size_t>(n * net.num_classes));
  }
}

std::vector<float> Model::predict(const std::vector<float>& input) const {
  const auto size = static_cast<int64_t>(input.size());
  check(size % net_->input_size == 0, "runtime::Model::predict: input holds ", size,
        " floats, not a multiple of input_size ", net_->input_size);
  const int64_t batch = size / net_->input_size;
  check(batch <= std::numeric_limits<int>::max(), "runtime::Model::predict: batch ", batch, " is too large");
  std::vector<float> logits(static_cast<size_t>(batch * net_->num_classes));
  predict(input.data(), static_cast<int>(batch), logits.data());
  return logits;
}

std::string Model::describe() const {
  const Network& net = *net_;
  std::ostringstream out;
  out << "kdistill runtime model " << net.path << "\n"
      << "input " << shape_str(net.input_shape) << ", normalised as (x - " << net.mean << ") / " << net.stddev
      << ", " << net.num_classes << " classes, " << net.layers.size() << " layers\n";
  for (size_t i = 0; i < net.layers.size(); ++i) {
    const Layer& l = net.layers[i];
    out << "  " << i << " " << l.type;
    if (l.op == Op::kLinear) out << " " << l.in_size << "->" << l.out_size;
    if (l.op == Op::kConv2d) out << " " << l.in_shape[0] << "->" << l.out_shape[0];
    if (l.op == Op::kConv2d || l.op == Op::kMaxPool2d || l.op == Op::kAvgPool2d) {
      out << " k" << l.kh << "x" << l.kw << " s" << l.sh << "x" << l.sw;
      if (l.op == Op::kConv2d) out << " p" << l.ph << "x" << l.pw;
    }
    if (l.op == Op::kGELUTanh) out << " (tanh)";
    out << " -> " << shape_str(l.out_shape) << "\n";
  }
  return out.str();
}

}  // namespace kdistill::runtime
