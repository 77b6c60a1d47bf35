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

enum class Op {
  kReshape, kLinear, kConv2d, kAffine, kMaxPool2d, kAvgPool2d, kGlobalAvgPool2d,
  kReLU, kHardtanh, kGELU, kGELUTanh, kSiLU, kHardswish, kHardsigmoid, kTanh, kSigmoid,
  kAdd, kMul, kConcat
};

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
};

}  // namespace detail

namespace {

using detail::Network;
using detail::Node;
using detail::Op;
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

using runtime_format::kFormat;
using runtime_format::kFormatChain;
using runtime_format::kNodeTypes;
using runtime_format::shape_str;
using runtime_format::slide;

// A bound on any one tensor or activation, so that a corrupt file fails cleanly instead of
// asking for terabytes.
constexpr int64_t kMaxElements = int64_t{1} << 31;
// Nodes and inputs of one node a file may hold.
constexpr int64_t kMaxNodes = 100000;
constexpr int64_t kMaxInputs = 1024;
// Inputs are run through the nodes this many at a time: it bounds the scratch buffers, keeps
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

std::vector<int64_t> read_ints(const H5::H5Object& obj, const std::string& name, const std::string& where,
                               int64_t max_values = 16) {
  H5::Attribute attr = open_attr(obj, name, where);
  check(attr.getTypeClass() == H5T_INTEGER, where, "attribute '", name, "' is not an integer");
  const auto n = attr.getSpace().getSimpleExtentNpoints();
  check(n >= 0 && n <= max_values, where, "attribute '", name, "' has ", n, " values");
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

// An optional 2-D hyperparameter: `fallback` when the file has none.
std::pair<int64_t, int64_t> read_pair_or(const H5::H5Object& obj, const std::string& name, const std::string& where,
                                         int64_t fallback) {
  return obj.attrExists(name) ? read_pair(obj, name, where) : std::make_pair(fallback, fallback);
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

// Linear, Conv2d and Affine: `weight` of `shape`, and `bias` [shape[0]] (zeros when the file has none).
void read_weights(const H5::Group& group, const std::vector<int64_t>& shape, const std::string& where, Node& l) {
  l.weight = read_floats(group, "weight", shape, where);
  if (group.nameExists("bias")) {
    l.bias = read_floats(group, "bias", {shape[0]}, where);
  } else {
    l.bias.assign(static_cast<size_t>(shape[0]), 0.0f);
  }
}

void need_image(const std::vector<int64_t>& in, const std::string& where) {
  check(in.size() == 3, where, "needs [C, H, W] inputs, got ", shape_str(in));
}

// Whether `small` is one value per channel of `big`: the same rank, big's channels, ones elsewhere.
bool per_channel_of(const std::vector<int64_t>& small, const std::vector<int64_t>& big) {
  if (small.size() != big.size() || small.empty() || small[0] != big[0]) return false;
  return std::all_of(small.begin() + 1, small.end(), [](int64_t d) { return d == 1; });
}

void read_conv(const H5::Group& group, const std::string& where, const std::vector<int64_t>& in, Node& l) {
  need_image(in, where);
  const int64_t in_channels = read_int(group, "in_channels", where);
  const int64_t out_channels = read_int(group, "out_channels", where);
  check(in_channels == in[0], where, "in_channels is ", in_channels, " but its input has ", in[0], " channels");
  check(out_channels > 0 && out_channels <= kMaxElements, where, "out_channels must be > 0, got ", out_channels);
  l.groups = group.attrExists("groups") ? read_int(group, "groups", where) : 1;
  check(l.groups > 0 && in_channels % l.groups == 0 && out_channels % l.groups == 0, where, "groups ", l.groups,
        " must be > 0 and divide in_channels ", in_channels, " and out_channels ", out_channels);
  std::tie(l.kh, l.kw) = read_pair(group, "kernel_size", where);
  std::tie(l.sh, l.sw) = read_pair(group, "stride", where);
  std::tie(l.ph, l.pw) = read_pair(group, "padding", where);
  std::tie(l.dh, l.dw) = read_pair_or(group, "dilation", where, 1);
  // The dilated kernel spans d * (k - 1) + 1 inputs; slide() bounds it with the others.
  check(l.dh > 0 && l.dw > 0 && l.dh <= (1 << 20) && l.dw <= (1 << 20) && l.kh > 0 && l.kw > 0 &&
            l.kh <= (1 << 20) && l.kw <= (1 << 20),
        where, "kernel_size and dilation must be in [1, 1048576], got ", l.kh, "x", l.kw, " and ", l.dh, "x", l.dw);
  const int64_t oh = slide(in[1], l.dh * (l.kh - 1) + 1, l.sh, l.ph, where);
  const int64_t ow = slide(in[2], l.dw * (l.kw - 1) + 1, l.sw, l.pw, where);
  read_weights(group, {out_channels, in_channels / l.groups, l.kh, l.kw}, where, l);
  l.out_shape = {out_channels, oh, ow};
  l.col_size = product({in_channels / l.groups * l.kh * l.kw, oh * ow}, where);
}

void read_pool(const H5::Group& group, const std::string& where, const std::vector<int64_t>& in, Node& l) {
  need_image(in, where);
  std::tie(l.kh, l.kw) = read_pair(group, "kernel_size", where);
  std::tie(l.sh, l.sw) = read_pair(group, "stride", where);
  std::tie(l.ph, l.pw) = read_pair_or(group, "padding", where, 0);
  // As in PyTorch: every window then holds at least one input, so a max is always defined.
  check(l.ph >= 0 && l.pw >= 0 && 2 * l.ph <= l.kh && 2 * l.pw <= l.kw, where,
        "padding must be at most half the kernel, got ", l.ph, "x", l.pw, " for a ", l.kh, "x", l.kw, " kernel");
  if (group.attrExists("count_include_pad")) l.count_include_pad = read_int(group, "count_include_pad", where) != 0;
  l.out_shape = {in[0], slide(in[1], l.kh, l.sh, l.ph, where), slide(in[2], l.kw, l.sw, l.pw, where)};
}

// Reads node `index` (value index + 1) of the file; `where` names the file. The shapes of the
// values before it are in `net.shapes`.
void load_node(const H5::Group& group, const std::string& file, int64_t index, Network& net, Node& l) {
  const std::string at = file + (net.format == kFormatChain ? "layer " : "node ") + std::to_string(index);
  l.type = read_string(group, "type", at + ": ");
  const std::string where = at + " (" + l.type + "): ";
  if (net.format == kFormatChain) {
    l.inputs = {index};
  } else {
    l.inputs = read_ints(group, "inputs", where, kMaxInputs);
    check(!l.inputs.empty(), where, "attribute 'inputs' is empty");
    for (auto v : l.inputs) {
      check(v >= 0 && v <= index, where, "input ", v, " is not an earlier value (0 is the model's input, ",
            "k + 1 the output of node k)");
    }
  }
  auto arity = [&](size_t n) {
    check(l.inputs.size() == n, where, "takes ", n, " input", n == 1 ? "" : "s", ", got ", l.inputs.size());
  };
  const auto& in = net.shapes[static_cast<size_t>(l.inputs[0])];
  const std::string& t = l.type;
  if (t == "Linear") {
    arity(1);
    l.op = Op::kLinear;
    check(in.size() == 1, where, "needs a flat input, got ", shape_str(in), " (a Flatten must come first)");
    const int64_t in_features = read_int(group, "in_features", where);
    const int64_t out_features = read_int(group, "out_features", where);
    check(in_features == in[0], where, "in_features is ", in_features, " but its input has ", in[0], " features");
    check(out_features > 0 && out_features <= kMaxElements, where, "out_features must be > 0, got ", out_features);
    read_weights(group, {out_features, in_features}, where, l);
    l.out_shape = {out_features};
  } else if (t == "Conv2d") {
    arity(1);
    l.op = Op::kConv2d;
    read_conv(group, where, in, l);
  } else if (t == "Affine") {
    arity(1);
    l.op = Op::kAffine;
    check(!in.empty(), where, "needs an input with channels");
    read_weights(group, {in[0]}, where, l);
    l.out_shape = in;
  } else if (t == "MaxPool2d" || t == "AvgPool2d") {
    arity(1);
    l.op = t == "MaxPool2d" ? Op::kMaxPool2d : Op::kAvgPool2d;
    read_pool(group, where, in, l);
  } else if (t == "GlobalAvgPool2d") {
    arity(1);
    l.op = Op::kGlobalAvgPool2d;
    need_image(in, where);
    l.out_shape = {in[0], 1, 1};
  } else if (t == "Flatten") {
    arity(1);
    l.op = Op::kReshape;
    l.out_shape = {product(in, where)};
  } else if (t == "Reshape") {
    arity(1);
    l.op = Op::kReshape;
    l.out_shape = read_ints(group, "shape", where);
    check(!l.out_shape.empty() && product(l.out_shape, where) == product(in, where), where, "cannot reshape ",
          shape_str(in), " to ", shape_str(l.out_shape));
  } else if (t == "Add" || t == "Mul") {
    arity(2);
    l.op = t == "Add" ? Op::kAdd : Op::kMul;
    const auto& b = net.shapes[static_cast<size_t>(l.inputs[1])];
    check(in == b || per_channel_of(b, in) || per_channel_of(in, b), where, "cannot combine ", shape_str(in),
          " with ", shape_str(b), ": shapes must match, or one must be one value per channel of the other");
    l.out_shape = per_channel_of(in, b) && in != b ? b : in;
  } else if (t == "Concat") {
    l.op = Op::kConcat;
    l.out_shape = in;
    check(!in.empty(), where, "needs inputs with channels");
    for (size_t i = 1; i < l.inputs.size(); ++i) {
      const auto& s = net.shapes[static_cast<size_t>(l.inputs[i])];
      check(s.size() == in.size() && std::equal(s.begin() + 1, s.end(), in.begin() + 1), where, "cannot concatenate ",
            shape_str(in), " and ", shape_str(s), " on channels");
      check(l.out_shape[0] <= kMaxElements - s[0], where, "too many channels");
      l.out_shape[0] += s[0];
    }
  } else if (t == "ReLU" || t == "Tanh" || t == "Sigmoid" || t == "GELU" || t == "SiLU" || t == "Hardswish" ||
             t == "Hardsigmoid" || t == "Hardtanh") {
    arity(1);
    l.op = t == "ReLU"        ? Op::kReLU
           : t == "Tanh"      ? Op::kTanh
           : t == "Sigmoid"   ? Op::kSigmoid
           : t == "SiLU"      ? Op::kSiLU
           : t == "Hardswish" ? Op::kHardswish
           : t == "Hardsigmoid" ? Op::kHardsigmoid
           : t == "Hardtanh"  ? Op::kHardtanh
                              : Op::kGELU;
    if (l.op == Op::kGELU && group.attrExists("approximate")) {
      const auto approximate = read_string(group, "approximate", where);
      check(approximate == "none" || approximate == "tanh", where, "approximate must be \"none\" or \"tanh\", got \"",
            approximate, "\"");
      if (approximate == "tanh") l.op = Op::kGELUTanh;
    }
    if (l.op == Op::kHardtanh) {
      const double lo = read_double(group, "min_val", where), hi = read_double(group, "max_val", where);
      check(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, where, "min_val ", lo, " and max_val ", hi,
            " must be finite with min_val <= max_val");
      l.lo = static_cast<float>(lo);
      l.hi = static_cast<float>(hi);
    }
    l.out_shape = in;
  } else {
    fail(where, "unknown ", net.format == kFormatChain ? "layer" : "node", " type \"", l.type, "\"; supported: ",
         kNodeTypes);
  }
  l.out_size = product(l.out_shape, where);
}

bool elementwise(Op op) {
  switch (op) {
    case Op::kLinear:
    case Op::kConv2d:
    case Op::kMaxPool2d:
    case Op::kAvgPool2d:
    case Op::kGlobalAvgPool2d:
    case Op::kConcat:
    case Op::kReshape:
      return false;
    default:
      return true;
  }
}

// Gives every value a buffer, reusing a buffer once the last reader of its value has run. A
// Reshape's output is its input's buffer. An elementwise node writes over an input that dies
// there and has the output's shape.
void plan_buffers(Network& net) {
  const auto values = net.nodes.size() + 1;
  std::vector<int64_t> root(values), last_use(values, -1);
  for (size_t v = 0; v < values; ++v) root[v] = static_cast<int64_t>(v);
  for (size_t k = 0; k < net.nodes.size(); ++k) {
    const Node& n = net.nodes[k];
    if (n.op == Op::kReshape) root[k + 1] = root[static_cast<size_t>(n.inputs[0])];
    for (auto v : n.inputs) {
      auto& last = last_use[static_cast<size_t>(root[static_cast<size_t>(v)])];
      last = std::max(last, static_cast<int64_t>(k));
    }
  }
  last_use[static_cast<size_t>(root.back())] = std::numeric_limits<int64_t>::max();  // the output is kept

  net.slot.assign(values, -1);
  std::vector<int> free_slots;
  auto take = [&](int64_t size) {
    int s = -1;
    if (!free_slots.empty()) {
      s = free_slots.back();
      free_slots.pop_back();
    } else {
      s = static_cast<int>(net.slot_size.size());
      net.slot_size.push_back(0);
    }
    net.slot_size[static_cast<size_t>(s)] = std::max(net.slot_size[static_cast<size_t>(s)], size);
    return s;
  };
  if (net.normalise) net.slot[0] = take(net.input_size);
  for (size_t k = 0; k < net.nodes.size(); ++k) {
    const Node& n = net.nodes[k];
    const auto out = k + 1;
    if (n.op == Op::kReshape) {
      net.slot[out] = net.slot[static_cast<size_t>(n.inputs[0])];
      continue;
    }
    // The buffers whose values die here (each once).
    std::vector<int64_t> dying;
    for (auto v : n.inputs) {
      const auto r = root[static_cast<size_t>(v)];
      if (last_use[static_cast<size_t>(r)] == static_cast<int64_t>(k) && net.slot[static_cast<size_t>(r)] >= 0 &&
          std::find(dying.begin(), dying.end(), r) == dying.end()) {
        dying.push_back(r);
      }
    }
    int s = -1;
    if (elementwise(n.op)) {
      for (auto v : n.inputs) {
        const auto r = root[static_cast<size_t>(v)];
        const auto it = std::find(dying.begin(), dying.end(), r);
        if (it != dying.end() && net.sizes[static_cast<size_t>(v)] == n.out_size) {
          s = net.slot[static_cast<size_t>(r)];
          dying.erase(it);
          break;
        }
      }
    }
    if (s < 0) s = take(n.out_size);
    net.slot[out] = s;
    for (auto r : dying) free_slots.push_back(net.slot[static_cast<size_t>(r)]);
    if (last_use[out] < 0) free_slots.push_back(s);  // nothing reads it
  }
}

std::shared_ptr<Network> read_network(const std::string& path) {
  const std::string where = "runtime::Model::load: " + path + ": ";
  check(H5::H5File::isHdf5(path), where, "not an HDF5 file");
  H5::H5File file(path, H5F_ACC_RDONLY);
  H5::Group root = file.openGroup("/");
  auto net = std::make_shared<Network>();
  net->path = path;
  check(root.attrExists("format"), where, "has no 'format' attribute: not a model written by kdistill::export_model");
  net->format = read_string(root, "format", where);
  check(net->format == kFormat || net->format == kFormatChain, where, "format is \"", net->format, "\", expected \"",
        kFormat, "\" (or the older \"", kFormatChain, "\"); re-export the model with this version of kdistill");
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

  const char* group_name = net->format == kFormatChain ? "layers" : "nodes";
  check(has_child(root, group_name, H5O_TYPE_GROUP), where, "has no group '", group_name, "'");
  H5::Group nodes = root.openGroup(group_name);
  const auto count = static_cast<int64_t>(nodes.getNumObjs());
  check(count > 0, where, "group '", group_name, "' is empty");
  check(count <= kMaxNodes, where, "group '", group_name, "' has ", count, " members; at most ", kMaxNodes);
  net->shapes = {net->input_shape};
  net->sizes = {net->input_size};
  for (int64_t i = 0; i < count; ++i) {
    const std::string name = std::to_string(i);
    check(has_child(nodes, name, H5O_TYPE_GROUP), where, group_name, "/", name, " is missing: expected groups 0 to ",
          count - 1);
    Node l;
    load_node(nodes.openGroup(name), where, i, *net, l);
    net->max_col = std::max(net->max_col, l.col_size);
    net->shapes.push_back(l.out_shape);
    net->sizes.push_back(l.out_size);
    net->nodes.push_back(std::move(l));
  }
  const auto& shape = net->shapes.back();
  check(shape.size() == 1 && shape[0] == net->num_classes, where, "the last ",
        net->format == kFormatChain ? "layer" : "node", " gives ", shape_str(shape), " per input, but num_classes is ",
        net->num_classes);
  plan_buffers(*net);
  int64_t total = 0;
  for (auto size : net->slot_size) total += size;
  check(total <= kMaxElements / kChunk, where, "activations of ", total, " floats per input are too large");
  return net;
}

// ---- running it ---------------------------------------------------------------------------

// Working memory of one thread, grown to the largest size needed and then reused.
struct Scratch {
  std::vector<std::vector<float>> slots;
  std::vector<float> col;
  std::vector<const float*> values;
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

void grow(std::vector<float>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
}

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

// Lays out the receptive fields of `channels` planes of [H, W] as the columns of a
// [channels * kh * kw, OH * OW] matrix (zeros where the window covers padding).
void im2col(const Node& l, const std::vector<int64_t>& in, int64_t channels, const float* x, float* col) {
  const int64_t h = in[1], w = in[2];
  const int64_t oh = l.out_shape[1], ow = l.out_shape[2];
  float* row = col;
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t ki = 0; ki < l.kh; ++ki) {
      for (int64_t kj = 0; kj < l.kw; ++kj, row += oh * ow) {
        for (int64_t i = 0; i < oh; ++i) {
          float* dst = row + i * ow;
          const int64_t ih = i * l.sh - l.ph + ki * l.dh;
          if (ih < 0 || ih >= h) {
            std::fill(dst, dst + ow, 0.0f);
            continue;
          }
          const float* src = x + (c * h + ih) * w;
          const int64_t offset = kj * l.dw - l.pw;
          if (l.sw == 1 && offset >= 0 && offset + ow <= w) {
            std::copy(src + offset, src + offset + ow, dst);
            continue;
          }
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t iw = j * l.sw + offset;
            dst[j] = (iw >= 0 && iw < w) ? src[iw] : 0.0f;
          }
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
        int64_t j0 = 0, j1 = ow;  // the output columns whose input column is inside the plane
        while (j0 < ow && j0 * l.sw + offset < 0) ++j0;
        while (j1 > j0 && (j1 - 1) * l.sw + offset >= w) --j1;
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
    if (group_in == 1 && !pointwise) {
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
      out.colwise() += b;
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

// Runs `n` inputs through the network; returns where the logits are (inside `s`).
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
int64_t Model::num_layers() const { return static_cast<int64_t>(net_->nodes.size()); }

void Model::predict(const float* input, int batch, float* logits) const {
  check(batch >= 0, "runtime::Model::predict: batch must be >= 0, got ", batch);
  if (batch == 0) return;
  check(input != nullptr && logits != nullptr, "runtime::Model::predict: input and logits must not be null");
  const Network& net = *net_;
  Scratch& s = scratch();
  const int64_t chunk = std::min<int64_t>(batch, kChunk);
  if (s.slots.size() < net.slot_size.size()) s.slots.resize(net.slot_size.size());
  for (size_t i = 0; i < net.slot_size.size(); ++i) grow(s.slots[i], chunk * net.slot_size[i]);
  grow(s.col, std::max<int64_t>(net.max_col, 1));
  if (s.values.size() < net.nodes.size() + 1) s.values.resize(net.nodes.size() + 1);
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
  out << "kdistill runtime model " << net.path << " (" << net.format << ")\n"
      << "input " << shape_str(net.input_shape) << ", normalised as (x - " << net.mean << ") / " << net.stddev
      << ", " << net.num_classes << " classes, " << net.nodes.size() << " nodes, " << net.slot_size.size()
      << " buffers\n";
  for (size_t i = 0; i < net.nodes.size(); ++i) {
    const Node& l = net.nodes[i];
    const auto& in = net.shapes[static_cast<size_t>(l.inputs[0])];
    out << "  " << i << " " << l.type;
    if (l.op == Op::kLinear) out << " " << in[0] << "->" << l.out_size;
    if (l.op == Op::kConv2d) out << " " << in[0] << "->" << l.out_shape[0];
    if (l.op == Op::kConv2d || l.op == Op::kMaxPool2d || l.op == Op::kAvgPool2d) {
      out << " k" << l.kh << "x" << l.kw << " s" << l.sh << "x" << l.sw;
      if (l.op == Op::kConv2d || l.ph != 0 || l.pw != 0) out << " p" << l.ph << "x" << l.pw;
      if (l.dh != 1 || l.dw != 1) out << " d" << l.dh << "x" << l.dw;
      if (l.groups != 1) out << " g" << l.groups;
    }
    if (l.op == Op::kGELUTanh) out << " (tanh)";
    if (l.op == Op::kHardtanh) out << " [" << l.lo << ", " << l.hi << "]";
    out << " -> " << shape_str(l.out_shape);
    // Where a node does not simply read the one before it, its inputs (x is the model's input).
    if (l.inputs != std::vector<int64_t>{static_cast<int64_t>(i)}) {
      out << " <-";
      for (auto v : l.inputs) out << " " << (v == 0 ? std::string("x") : std::to_string(v - 1));
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace kdistill::runtime
