#include "kdistill/runtime/runtime.h"

#include <H5Cpp.h>

#include <cstdlib>

#include "io/hdf5_checked.h"
#include "runtime/format.h"
#include "runtime/network.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <sstream>
#include <tuple>

namespace kdistill::runtime {
namespace {

using detail::Network;
using detail::Node;
using detail::Op;
using detail::Scratch;

using runtime_format::kFormat;
using runtime_format::kFormatChain;
using runtime_format::kNodeTypes;
using runtime_format::per_channel_of;
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

// The fastest build of the kernels this CPU runs, or the one KDISTILL_RUNTIME_KERNELS names
// ("generic", "avx2" or "avx512"; for comparisons and tests).
void pick_kernels(Network& net, const std::string& where) {
  struct Build {
    const char* name;
    bool runs;  // this CPU has what it needs
    const float* (*run)(const Network&, const float*, int64_t, Scratch&);
  };
#ifdef KDISTILL_RUNTIME_X86_KERNELS
  const bool fma = __builtin_cpu_supports("fma");
  const Build builds[] = {
      {"avx512",
       fma && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"),
       detail::avx512::run},
      {"avx2", fma && __builtin_cpu_supports("avx2"), detail::avx2::run},
      {"generic", true, detail::generic::run}};
#else
  const Build builds[] = {{"generic", true, detail::generic::run}};
#endif
  const char* forced = std::getenv("KDISTILL_RUNTIME_KERNELS");
  const std::string want = forced != nullptr ? forced : "";
  for (const Build& b : builds) {
    if (want.empty() ? b.runs : want == b.name) {
      check(b.runs, where, "KDISTILL_RUNTIME_KERNELS=", want, ", but this CPU cannot run those kernels");
      net.kernels = b.name;
      net.run = b.run;
      return;
    }
  }
  fail(where, "KDISTILL_RUNTIME_KERNELS is \"", want, "\"; this build of the runtime has ",
#ifdef KDISTILL_RUNTIME_X86_KERNELS
       "\"generic\", \"avx2\" and \"avx512\""
#else
       "\"generic\" only"
#endif
  );
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
  pick_kernels(*net, where);
  int64_t total = 0;
  for (auto size : net->slot_size) total += size;
  check(total <= kMaxElements / kChunk, where, "activations of ", total, " floats per input are too large");
  return net;
}

// ---- running it ---------------------------------------------------------------------------

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

void grow(std::vector<float>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
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
    const float* out = net.run(net, input + start * net.input_size, n, s);
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
  out << "kdistill runtime model " << net.path << " (" << net.format << ", " << net.kernels << " kernels)\n"
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
