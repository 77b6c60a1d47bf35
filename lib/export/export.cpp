#include "kdistill/export/export.h"

#include <H5Cpp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <sstream>
#include <utility>
#include <variant>

#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/torch.h>

#include "io/hdf5_util.h"
#include "kdistill/core/error.h"
#include "kdistill/version.h"
#include "runtime/format.h"

namespace kdistill {
namespace {

namespace nn = torch::nn;
namespace jit = torch::jit;

using runtime_format::shape_str;
constexpr const char* kSupported =
    "Flatten, Linear, Conv2d, BatchNorm1d, BatchNorm2d, MaxPool2d, AvgPool2d, ReLU, GELU, Tanh, Sigmoid, Dropout, "
    "Identity";

// ---- one layer of the source model, read from C++ or TorchScript ----------------------------

struct Source {
  std::string where;  // "layer 3", or "layer 2.1" inside a nested Sequential
  std::string kind;   // "Linear", "Conv2d", ... or the name of an unsupported module
  bool supported = true;
  torch::Tensor weight, bias, running_mean, running_var;  // undefined where the module has none
  double eps = 1e-5;
  std::vector<int64_t> kernel, stride, padding{0, 0}, dilation{1, 1};
  int64_t groups = 1;
  bool zero_padding_mode = true;
  std::string padding_error;  // why the padding cannot be expressed as zeros on each side
  bool ceil_mode = false;
  bool divisor_override = false;
  int64_t start_dim = 1, end_dim = -1;
  std::string approximate = "none";

  std::string who() const { return "export_model: " + where + " (" + kind + ")"; }
};

std::string child_name(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "." + name;
}

// padding="same" (stride 1, dilation 1): (k - 1) / 2 zeros on each side, when k is odd.
void same_padding(Source& s) {
  s.padding.clear();
  for (auto k : s.kernel) {
    if ((k - 1) % 2 != 0) s.padding_error = "padding='same' with an even kernel pads unevenly";
    s.padding.push_back((k - 1) / 2);
  }
}

// ---- C++ modules --------------------------------------------------------------------------

// "torch::nn::SoftmaxImpl" -> "Softmax"
std::string cpp_kind(const nn::Module& m) {
  std::string name = m.name();
  const std::string prefix = "torch::nn::";
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  if (name.size() > 4 && name.compare(name.size() - 4, 4, "Impl") == 0) name.resize(name.size() - 4);
  return name;
}

template <size_t D>
std::vector<int64_t> to_vector(const torch::ExpandingArray<D>& a) {
  return std::vector<int64_t>(a->begin(), a->end());
}

// Conv2d's padding is a variant (c10::variant in LibTorch 1.x, std::variant in 2.x): with
// `using std::get_if`, argument-dependent lookup finds the matching get_if for either.
template <typename Padding>
void cpp_conv_padding(Padding& padding, Source& s) {
  using std::get_if;
  if (const auto* pad = get_if<torch::ExpandingArray<2>>(&padding)) {
    s.padding = to_vector(*pad);
  } else if (get_if<torch::enumtype::kValid>(&padding) != nullptr) {
    s.padding = {0, 0};
  } else {
    same_padding(s);
  }
}

template <typename Mode>
bool cpp_zero_padding_mode(Mode& mode) {
  using std::get_if;
  return get_if<torch::enumtype::kZeros>(&mode) != nullptr;
}

void cpp_sources(const std::shared_ptr<nn::Module>& module, const std::string& name, std::vector<Source>& out) {
  if (auto seq = std::dynamic_pointer_cast<nn::SequentialImpl>(module)) {
    for (const auto& child : seq->named_children()) cpp_sources(child.value(), child_name(name, child.key()), out);
    return;
  }
  Source s;
  s.where = "layer " + name;
  s.kind = cpp_kind(*module);
  nn::Module* m = module.get();
  if (auto* p = dynamic_cast<nn::LinearImpl*>(m)) {
    s.kind = "Linear";
    s.weight = p->weight;
    s.bias = p->bias;
  } else if (auto* p = dynamic_cast<nn::Conv2dImpl*>(m)) {
    s.kind = "Conv2d";
    s.weight = p->weight;
    s.bias = p->bias;
    s.kernel = to_vector(p->options.kernel_size());
    s.stride = to_vector(p->options.stride());
    s.dilation = to_vector(p->options.dilation());
    s.groups = p->options.groups();
    s.zero_padding_mode = cpp_zero_padding_mode(p->options.padding_mode());
    cpp_conv_padding(p->options.padding(), s);
  } else if (auto* p = dynamic_cast<nn::BatchNorm1dImpl*>(m)) {
    s.kind = "BatchNorm1d";
    s.weight = p->weight;
    s.bias = p->bias;
    s.running_mean = p->running_mean;
    s.running_var = p->running_var;
    s.eps = p->options.eps();
  } else if (auto* p = dynamic_cast<nn::BatchNorm2dImpl*>(m)) {
    s.kind = "BatchNorm2d";
    s.weight = p->weight;
    s.bias = p->bias;
    s.running_mean = p->running_mean;
    s.running_var = p->running_var;
    s.eps = p->options.eps();
  } else if (auto* p = dynamic_cast<nn::MaxPool2dImpl*>(m)) {
    s.kind = "MaxPool2d";
    s.kernel = to_vector(p->options.kernel_size());
    s.stride = to_vector(p->options.stride());
    s.padding = to_vector(p->options.padding());
    s.dilation = to_vector(p->options.dilation());
    s.ceil_mode = p->options.ceil_mode();
  } else if (auto* p = dynamic_cast<nn::AvgPool2dImpl*>(m)) {
    s.kind = "AvgPool2d";
    s.kernel = to_vector(p->options.kernel_size());
    s.stride = to_vector(p->options.stride());
    s.padding = to_vector(p->options.padding());
    s.ceil_mode = p->options.ceil_mode();
    s.divisor_override = p->options.divisor_override().has_value();
  } else if (auto* p = dynamic_cast<nn::FlattenImpl*>(m)) {
    s.kind = "Flatten";
    s.start_dim = p->options.start_dim();
    s.end_dim = p->options.end_dim();
  } else if (auto* p = dynamic_cast<nn::GELUImpl*>(m)) {
    s.kind = "GELU";
    s.approximate = p->options.approximate();
  } else if (dynamic_cast<nn::ReLUImpl*>(m) != nullptr) {
    s.kind = "ReLU";
  } else if (dynamic_cast<nn::TanhImpl*>(m) != nullptr) {
    s.kind = "Tanh";
  } else if (dynamic_cast<nn::SigmoidImpl*>(m) != nullptr) {
    s.kind = "Sigmoid";
  } else if (dynamic_cast<nn::DropoutImpl*>(m) != nullptr) {
    s.kind = "Dropout";
  } else if (dynamic_cast<nn::IdentityImpl*>(m) != nullptr) {
    s.kind = "Identity";
  } else {
    s.supported = false;
  }
  out.push_back(std::move(s));
}

// ---- TorchScript modules ------------------------------------------------------------------

// The class of a torch.nn module ("Conv2d"; traced classes may be mangled, the last name is
// kept), or the class name of anything else ("MyBlock").
std::string script_kind(const jit::Module& m, bool& from_torch_nn) {
  const auto type_name = m.type()->name();  // a copy: the type pointer is a temporary
  from_torch_nn = false;
  if (!type_name.has_value()) return "<unnamed TorchScript class>";
  from_torch_nn = type_name->qualifiedName().rfind("__torch__.torch.nn.modules.", 0) == 0;
  return from_torch_nn ? type_name->name() : type_name->qualifiedName();
}

torch::Tensor script_tensor(const jit::Module& m, const std::string& name) {
  if (!m.hasattr(name)) return {};
  const auto value = m.attr(name);
  return value.isTensor() ? value.toTensor() : torch::Tensor();
}

// Where a traced module's forward passes a hyperparameter: argument `index` of a call to `op`.
struct TracedArgument {
  const char* op;
  size_t index;
};

// A traced module keeps none of its class's constants (stride, eps, ...); they are the constant
// arguments of the one operator call in its forward graph (one of `calls`). Any other call (a
// reflection pad before a convolution, say) would be lost, so it is refused.
c10::IValue traced_argument(const jit::Module& m, const Source& s, const std::string& name,
                            const std::vector<TracedArgument>& calls) {
  const auto method = m.find_method("forward");
  check(method.has_value(), s.who(), ": the TorchScript module has no forward method");
  const jit::Node* call = nullptr;
  size_t index = 0;
  for (const jit::Node* node : method->graph()->nodes()) {
    const std::string kind = node->kind().toQualString();
    if (kind == "prim::Constant" || kind == "prim::ListConstruct" || kind == "prim::GetAttr") continue;
    const auto match = std::find_if(calls.begin(), calls.end(), [&](const TracedArgument& c) { return kind == c.op; });
    if (match == calls.end() || call != nullptr) {
      fail(s.who(), ": cannot read its ", name, ": the module has no constant '", name, "' and its forward calls ",
           kind, " besides one ", calls.front().op);
    }
    call = node;
    index = match->index;
  }
  if (call == nullptr || index >= call->inputs().size()) {
    fail(s.who(), ": cannot read its ", name, ": the module has no constant '", name, "' and no ", calls.front().op,
         " call in its forward");
  }
  const jit::Value* value = call->input(index);
  if (auto constant = jit::toIValue(value)) return *constant;
  if (value->node()->kind() == c10::Symbol::fromQualString("prim::ListConstruct")) {
    c10::List<int64_t> items;
    for (const jit::Value* item : value->node()->inputs()) {
      auto constant = jit::toIValue(item);
      if (!constant.has_value() || !constant->isInt()) {
        fail(s.who(), ": its ", name, " is not a constant list of integers in its traced forward");
      }
      items.push_back(constant->toInt());
    }
    return c10::IValue(std::move(items));
  }
  fail(s.who(), ": its ", name, " is not a constant in its traced forward");
}

// A hyperparameter: the class constant (torch.jit.script), or an argument of the call in the
// forward graph (torch.jit.trace).
c10::IValue script_hyper(const jit::Module& m, const Source& s, const std::string& name,
                         const std::vector<TracedArgument>& calls) {
  if (m.hasattr(name)) return m.attr(name);
  return traced_argument(m, s, name, calls);
}

std::vector<int64_t> to_ints(const c10::IValue& v, const Source& s, const std::string& name) {
  std::vector<int64_t> out;
  auto element = [&](const c10::IValue& e) {
    if (!e.isInt()) fail(s.who(), ": ", name, " must hold integers, got a ", e.tagKind());
    out.push_back(e.toInt());
  };
  if (v.isInt()) {
    out.assign(2, v.toInt());
  } else if (v.isIntList()) {
    out = v.toIntVector();
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) element(e);
  } else if (v.isList()) {
    for (const auto& e : v.toListRef()) element(e);
  } else {
    fail(s.who(), ": ", name, " must be an integer or a pair of integers, got a ", v.tagKind());
  }
  if (out.size() == 1) out.push_back(out[0]);
  if (out.size() != 2) fail(s.who(), ": ", name, " must have 2 values, got ", out.size());
  return out;
}

int64_t to_int(const c10::IValue& v, const Source& s, const std::string& name) {
  if (!v.isInt()) fail(s.who(), ": ", name, " must be an integer, got a ", v.tagKind());
  return v.toInt();
}

bool to_bool(const c10::IValue& v, const Source& s, const std::string& name) {
  if (!v.isBool()) fail(s.who(), ": ", name, " must be a bool, got a ", v.tagKind());
  return v.toBool();
}

void script_sources(const jit::Module& m, const std::string& name, std::vector<Source>& out) {
  bool torch_nn = false;
  const std::string kind = script_kind(m, torch_nn);
  if (torch_nn && kind == "Sequential") {
    for (const auto& child : m.named_children()) script_sources(child.value, child_name(name, child.name), out);
    return;
  }
  Source s;
  s.where = "layer " + name;
  s.kind = kind;
  if (!torch_nn) {
    s.supported = false;
  } else if (kind == "Linear") {
    s.weight = script_tensor(m, "weight");
    s.bias = script_tensor(m, "bias");
  } else if (kind == "Conv2d") {
    s.weight = script_tensor(m, "weight");
    s.bias = script_tensor(m, "bias");
    if (s.weight.defined() && s.weight.dim() == 4) s.kernel = {s.weight.size(2), s.weight.size(3)};
    // Traced: _convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
    // groups, ...), or _convolution_mode(input, weight, bias, stride, padding: str, dilation, groups).
    const char* conv = "aten::_convolution";
    const char* conv_mode = "aten::_convolution_mode";
    s.stride = to_ints(script_hyper(m, s, "stride", {{conv, 3}, {conv_mode, 3}}), s, "stride");
    s.dilation = to_ints(script_hyper(m, s, "dilation", {{conv, 5}, {conv_mode, 5}}), s, "dilation");
    s.groups = to_int(script_hyper(m, s, "groups", {{conv, 8}, {conv_mode, 6}}), s, "groups");
    const auto padding = script_hyper(m, s, "padding", {{conv, 4}, {conv_mode, 4}});
    if (padding.isString() && padding.toStringRef() == "same") {
      same_padding(s);
    } else if (padding.isString() && padding.toStringRef() == "valid") {
      s.padding = {0, 0};
    } else {
      s.padding = to_ints(padding, s, "padding");
    }
    // A traced module with another padding mode pads in a separate call, which traced_argument refuses.
    if (m.hasattr("padding_mode")) {
      const auto mode = m.attr("padding_mode");
      s.zero_padding_mode = mode.isString() && mode.toStringRef() == "zeros";
    }
  } else if (kind == "BatchNorm1d" || kind == "BatchNorm2d") {
    s.weight = script_tensor(m, "weight");
    s.bias = script_tensor(m, "bias");
    s.running_mean = script_tensor(m, "running_mean");
    s.running_var = script_tensor(m, "running_var");
    // (input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled)
    const auto eps = script_hyper(m, s, "eps", {{"aten::batch_norm", 7}});
    if (!eps.isDouble()) fail(s.who(), ": eps must be a float, got a ", eps.tagKind());
    s.eps = eps.toDouble();
  } else if (kind == "MaxPool2d") {
    const char* op = "aten::max_pool2d";  // (input, kernel_size, stride, padding, dilation, ceil_mode)
    s.kernel = to_ints(script_hyper(m, s, "kernel_size", {{op, 1}}), s, "kernel_size");
    s.stride = to_ints(script_hyper(m, s, "stride", {{op, 2}}), s, "stride");
    s.padding = to_ints(script_hyper(m, s, "padding", {{op, 3}}), s, "padding");
    s.dilation = to_ints(script_hyper(m, s, "dilation", {{op, 4}}), s, "dilation");
    s.ceil_mode = to_bool(script_hyper(m, s, "ceil_mode", {{op, 5}}), s, "ceil_mode");
  } else if (kind == "AvgPool2d") {
    // (input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    const char* op = "aten::avg_pool2d";
    s.kernel = to_ints(script_hyper(m, s, "kernel_size", {{op, 1}}), s, "kernel_size");
    s.stride = to_ints(script_hyper(m, s, "stride", {{op, 2}}), s, "stride");
    s.padding = to_ints(script_hyper(m, s, "padding", {{op, 3}}), s, "padding");
    s.ceil_mode = to_bool(script_hyper(m, s, "ceil_mode", {{op, 4}}), s, "ceil_mode");
    s.divisor_override = !script_hyper(m, s, "divisor_override", {{op, 6}}).isNone();
  } else if (kind == "Flatten") {
    s.start_dim = to_int(script_hyper(m, s, "start_dim", {{"aten::flatten", 1}}), s, "start_dim");
    s.end_dim = to_int(script_hyper(m, s, "end_dim", {{"aten::flatten", 2}}), s, "end_dim");
  } else if (kind == "GELU") {
    const auto approximate = script_hyper(m, s, "approximate", {{"aten::gelu", 1}});
    if (!approximate.isString()) fail(s.who(), ": approximate must be a string, got a ", approximate.tagKind());
    s.approximate = approximate.toStringRef();
  } else if (kind != "ReLU" && kind != "Tanh" && kind != "Sigmoid" && kind != "Dropout" && kind != "Identity") {
    s.supported = false;
  }
  out.push_back(std::move(s));
}

// ---- the exported layers ------------------------------------------------------------------

struct Exported {
  std::string type;
  torch::Tensor weight, bias;  // float32, CPU, contiguous (Linear, Conv2d)
  std::vector<std::pair<std::string, int64_t>> scalars;
  std::vector<std::pair<std::string, std::vector<int64_t>>> arrays;
  std::vector<std::pair<std::string, std::string>> strings;
};

struct Plan {
  std::vector<int64_t> input_shape;
  int64_t num_classes = 0;
  std::vector<Exported> layers;
};

torch::Tensor cpu_double(const torch::Tensor& t) { return t.detach().to(torch::kCPU).to(torch::kDouble); }
torch::Tensor cpu_float(const torch::Tensor& t) { return t.detach().to(torch::kCPU).to(torch::kFloat).contiguous(); }

void check_finite(const torch::Tensor& t, const Source& s, const char* what) {
  check(torch::isfinite(t).all().item<bool>(), s.who(), ": its ", what, " holds non-finite values");
}

// The runtime's shapes are per sample; the model's first Linear fixes an MLP's input width.
std::vector<int64_t> input_shape_of(const std::vector<Source>& sources, const std::vector<int64_t>& given) {
  if (!given.empty()) {
    for (auto d : given) check(d > 0, "export_model: input_shape must be positive, got ", shape_str(given));
    return given;
  }
  for (const auto& s : sources) {
    if (s.kind == "Flatten" || s.kind == "Dropout" || s.kind == "Identity") continue;
    if (s.kind == "Linear" && s.weight.defined() && s.weight.dim() == 2) return {s.weight.size(1)};
    fail("export_model: ExportOptions::input_shape is needed for a model that starts with ", s.kind);
  }
  fail("export_model: the model has no layers");
}

// Linear and Conv2d weights with their bias (zeros when the layer has none).
void add_weights(Exported& e, const Source& s) {
  check_finite(s.weight, s, "weight");
  e.weight = cpu_float(s.weight);
  if (s.bias.defined()) {
    check_finite(s.bias, s, "bias");
    e.bias = cpu_float(s.bias);
  } else {
    e.bias = torch::zeros({e.weight.size(0)}, torch::kFloat);
  }
}

// Eval-mode BatchNorm after a Linear/Conv2d is an affine map per output channel, folded into it:
// w' = w * g, b' = (b - mean) * g + beta, with g = gamma / sqrt(var + eps). Done in double.
void fold_batch_norm(Exported& layer, const Source& bn) {
  const int64_t channels = layer.weight.size(0);
  check(bn.running_mean.defined() && bn.running_var.defined(), bn.who(),
        ": has no running statistics (track_running_stats=false), so it cannot be folded");
  check(bn.running_mean.numel() == channels && bn.running_var.numel() == channels, bn.who(), ": has ",
        bn.running_mean.numel(), " features but the ", layer.type, " before it gives ", channels);
  const auto mean = cpu_double(bn.running_mean);
  const auto var = cpu_double(bn.running_var);
  const auto gamma = bn.weight.defined() ? cpu_double(bn.weight) : torch::ones_like(mean);
  const auto beta = bn.bias.defined() ? cpu_double(bn.bias) : torch::zeros_like(mean);
  check(bn.eps >= 0 && (var + bn.eps).gt(0).all().item<bool>(), bn.who(), ": running_var + eps must be > 0");
  const auto scale = gamma / torch::sqrt(var + bn.eps);
  std::vector<int64_t> per_channel(static_cast<size_t>(layer.weight.dim()), 1);
  per_channel[0] = channels;
  layer.weight = (cpu_double(layer.weight) * scale.view(per_channel)).to(torch::kFloat).contiguous();
  layer.bias = ((cpu_double(layer.bias) - mean) * scale + beta).to(torch::kFloat).contiguous();
  check_finite(layer.weight, bn, "folded weight");
  check_finite(layer.bias, bn, "folded bias");
}

// Output length of a window sliding over `size`, with the runtime's own bounds.
int64_t slide(int64_t size, int64_t kernel, int64_t stride, int64_t pad, const Source& s) {
  return runtime_format::slide(size, kernel, stride, pad, s.who() + ": ");
}

Exported plan_conv(const Source& s, std::vector<int64_t>& shape) {
  check(s.groups == 1, s.who(), ": groups must be 1, got ", s.groups);
  check(s.dilation == std::vector<int64_t>{1, 1}, s.who(), ": dilation must be 1, got ", shape_str(s.dilation));
  check(s.zero_padding_mode, s.who(), ": only zero padding is supported (padding_mode='zeros')");
  check(s.padding_error.empty(), s.who(), ": ", s.padding_error);
  check(s.weight.defined() && s.weight.dim() == 4, s.who(), ": has no 4-D weight");
  check(shape.size() == 3, s.who(), ": needs [C, H, W] inputs, but gets ", shape_str(shape));
  const int64_t out_channels = s.weight.size(0), in_channels = s.weight.size(1);
  check(in_channels == shape[0], s.who(), ": takes ", in_channels, " channels but its input has ", shape[0]);
  const std::vector<int64_t> kernel{s.weight.size(2), s.weight.size(3)};
  const int64_t oh = slide(shape[1], kernel[0], s.stride[0], s.padding[0], s);
  const int64_t ow = slide(shape[2], kernel[1], s.stride[1], s.padding[1], s);
  Exported e;
  e.type = "Conv2d";
  add_weights(e, s);
  e.scalars = {{"in_channels", in_channels}, {"out_channels", out_channels}};
  e.arrays = {{"kernel_size", kernel}, {"stride", s.stride}, {"padding", s.padding}};
  shape = {out_channels, oh, ow};
  return e;
}

Exported plan_pool(const Source& s, std::vector<int64_t>& shape) {
  check(s.padding == std::vector<int64_t>{0, 0}, s.who(), ": padding must be 0, got ", shape_str(s.padding));
  check(s.dilation == std::vector<int64_t>{1, 1}, s.who(), ": dilation must be 1, got ", shape_str(s.dilation));
  check(!s.ceil_mode, s.who(), ": ceil_mode must be off");
  check(!s.divisor_override, s.who(), ": divisor_override is not supported");
  check(shape.size() == 3, s.who(), ": needs [C, H, W] inputs, but gets ", shape_str(shape));
  check(s.kernel.size() == 2 && s.stride.size() == 2, s.who(), ": kernel_size and stride must have 2 values");
  const int64_t oh = slide(shape[1], s.kernel[0], s.stride[0], 0, s);
  const int64_t ow = slide(shape[2], s.kernel[1], s.stride[1], 0, s);
  Exported e;
  e.type = s.kind;
  e.arrays = {{"kernel_size", s.kernel}, {"stride", s.stride}, {"padding", {0, 0}}};
  shape = {shape[0], oh, ow};
  return e;
}

Plan plan_layers(const std::vector<Source>& sources, const std::vector<int64_t>& given_shape) {
  for (const Source& s : sources) {
    check(s.supported, "export_model: ", s.where, " (", s.kind, ") is not supported; supported: ", kSupported);
  }
  Plan plan;
  plan.input_shape = input_shape_of(sources, given_shape);
  std::vector<int64_t> shape = plan.input_shape;
  // Whether the last exported layer is a Linear/Conv2d followed by identities only, so that a
  // BatchNorm here can be folded into it.
  bool foldable = false;
  for (const Source& s : sources) {
    if (s.kind == "Dropout" || s.kind == "Identity") continue;  // identities in eval mode
    if (s.kind == "BatchNorm1d" || s.kind == "BatchNorm2d") {
      const char* before = s.kind == "BatchNorm1d" ? "Linear" : "Conv2d";
      check(foldable && plan.layers.back().type == before, s.who(), ": must come right after a ", before,
            ", into which it is folded");
      fold_batch_norm(plan.layers.back(), s);
      continue;
    }
    Exported e;
    foldable = false;
    if (s.kind == "Linear") {
      check(s.weight.defined() && s.weight.dim() == 2, s.who(), ": has no 2-D weight");
      check(shape.size() == 1, s.who(), ": needs flat inputs but gets ", shape_str(shape),
            " per sample (put a Flatten before it, or check ExportOptions::input_shape)");
      const int64_t out_features = s.weight.size(0), in_features = s.weight.size(1);
      check(in_features == shape[0], s.who(), ": takes ", in_features, " features but its input has ", shape[0],
            " (check ExportOptions::input_shape)");
      e.type = "Linear";
      add_weights(e, s);
      e.scalars = {{"in_features", in_features}, {"out_features", out_features}};
      shape = {out_features};
      foldable = true;
    } else if (s.kind == "Conv2d") {
      e = plan_conv(s, shape);
      foldable = true;
    } else if (s.kind == "MaxPool2d" || s.kind == "AvgPool2d") {
      e = plan_pool(s, shape);
    } else if (s.kind == "Flatten") {
      const auto rank = static_cast<int64_t>(shape.size());  // the batch is dimension 0
      check(s.start_dim == 1 && (s.end_dim == -1 || s.end_dim == rank), s.who(),
            ": only Flatten(start_dim=1, end_dim=-1) is supported, got start_dim=", s.start_dim,
            " end_dim=", s.end_dim);
      e.type = "Flatten";
      shape = {std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>())};
    } else if (s.kind == "GELU") {
      check(s.approximate == "none" || s.approximate == "tanh", s.who(),
            ": approximate must be \"none\" or \"tanh\", got \"", s.approximate, "\"");
      e.type = "GELU";
      e.strings = {{"approximate", s.approximate}};
    } else {  // ReLU, Tanh, Sigmoid
      e.type = s.kind;
    }
    plan.layers.push_back(std::move(e));
  }
  check(!plan.layers.empty(), "export_model: the model has no layers to export");
  check(shape.size() == 1, "export_model: the model gives ", shape_str(shape),
        " per input; the runtime needs [num_classes] logits (end with a Flatten and a Linear)");
  plan.num_classes = shape[0];
  return plan;
}

// The model itself, in eval mode on zeros, must agree with the planned shapes: a wrong
// input_shape, or a module whose forward is not its layers in order, shows up here.
void check_forward(const Model& model, const Plan& plan) {
  Model m = model;  // shares the module
  TrainingModeGuard<Model> eval(m, false);
  torch::NoGradGuard no_grad;
  std::vector<int64_t> dims{1};
  dims.insert(dims.end(), plan.input_shape.begin(), plan.input_shape.end());
  const auto params = m.parameters();
  const auto dtype = params.empty() ? torch::kFloat : params.front().scalar_type();
  torch::Tensor out;
  try {
    out = m.forward(torch::zeros(dims, torch::TensorOptions().dtype(dtype).device(m.device())));
  } catch (const c10::Error& e) {
    fail("export_model: the model's forward on an input of shape ", shape_str(dims),
         " failed (check ExportOptions::input_shape): ", first_line(e.what_without_backtrace()));
  }
  check(out.dim() == 2 && out.size(0) == 1 && out.size(1) == plan.num_classes, "export_model: the model returns ",
        out.sizes(), " for one input, but its layers give [1, ", plan.num_classes, "]");
}

// ---- the file -----------------------------------------------------------------------------

void write_file(H5::H5File& file, const Plan& plan, const std::string& arch, const ExportOptions& options) {
  using namespace detail;
  write_string_attr(file, "format", runtime_format::kFormat);
  write_string_attr(file, "kdistill_version", kVersion);
  write_string_attr(file, "arch", arch);
  write_ints_attr(file, "input_shape", plan.input_shape);
  write_int_attr(file, "num_classes", plan.num_classes);
  write_double_attr(file, "mean", options.mean());
  write_double_attr(file, "std", options.std());
  H5::Group layers = file.createGroup("layers");
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    const Exported& e = plan.layers[i];
    H5::Group g = layers.createGroup(std::to_string(i));
    write_string_attr(g, "type", e.type);
    for (const auto& [name, value] : e.scalars) write_int_attr(g, name, value);
    for (const auto& [name, values] : e.arrays) write_ints_attr(g, name, values);
    for (const auto& [name, value] : e.strings) write_string_attr(g, name, value);
    if (e.weight.defined()) write_dataset(g, "weight", e.weight);
    if (e.bias.defined()) write_dataset(g, "bias", e.bias);
  }
}

}  // namespace

void export_model(const Model& model, const std::string& path, const ExportOptions& options) {
  check(model.defined(), "export_model: the model is empty");
  check(!path.empty(), "export_model: path is empty");
  check(std::isfinite(options.mean()), "export_model: mean must be finite, got ", options.mean());
  check(std::isfinite(options.std()) && options.std() > 0, "export_model: std must be finite and > 0, got ",
        options.std());
  torch::NoGradGuard no_grad;
  std::vector<Source> sources;
  if (model.is_torchscript()) {
    bool torch_nn = false;
    const std::string kind = script_kind(*model.script(), torch_nn);
    check(torch_nn && kind == "Sequential",
          "export_model: only an nn.Sequential can be exported; this TorchScript model is a ", kind);
    script_sources(*model.script(), "", sources);
  } else {
    const auto module = model.module();
    check(std::dynamic_pointer_cast<nn::SequentialImpl>(module) != nullptr,
          "export_model: only a torch::nn::Sequential can be exported; this model is a ", cpp_kind(*module));
    cpp_sources(module, "", sources);
  }
  const Plan plan = plan_layers(sources, options.input_shape());
  check_forward(model, plan);
  detail::write_h5("export_model", path,
                   [&](H5::H5File& file) { write_file(file, plan, model.arch(), options); });
}

}  // namespace kdistill
