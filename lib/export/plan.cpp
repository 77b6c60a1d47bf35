#include "export/plan.h"

#include <H5Cpp.h>

#include <algorithm>
#include <functional>
#include <numeric>

#include <torch/torch.h>

#include "io/hdf5_util.h"
#include "kdistill/core/error.h"
#include "kdistill/export/export.h"
#include "kdistill/version.h"
#include "runtime/format.h"

namespace kdistill::export_plan {
namespace {

using runtime_format::shape_str;
using runtime_format::per_channel_of;

torch::Tensor cpu_double(const torch::Tensor& t) { return t.detach().to(torch::kCPU).to(torch::kDouble); }
torch::Tensor cpu_float(const torch::Tensor& t) { return t.detach().to(torch::kCPU).to(torch::kFloat).contiguous(); }

void check_finite(const torch::Tensor& t, const std::string& who, const char* what) {
  check(torch::isfinite(t).all().item<bool>(), who, ": its ", what, " holds non-finite values");
}

// Weights with their bias (zeros when there is none), as the runtime reads them.
void add_weights(Node& node, const torch::Tensor& weight, const torch::Tensor& bias, const std::string& who) {
  check_finite(weight, who, "weight");
  node.weight = cpu_float(weight);
  if (bias.defined()) {
    check(bias.dim() == 1 && bias.size(0) == weight.size(0), who, ": its bias has shape ", bias.sizes(),
          ", expected [", weight.size(0), "]");
    check_finite(bias, who, "bias");
    node.bias = cpu_float(bias);
  } else {
    node.bias = torch::zeros({weight.size(0)}, torch::kFloat);
  }
}

int64_t numel(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

// Output length of a window sliding over `size`, with the runtime's own bounds.
int64_t slide(int64_t size, int64_t kernel, int64_t stride, int64_t pad, const std::string& who) {
  return runtime_format::slide(size, kernel, stride, pad, who + ": ");
}

void need_pair(const std::vector<int64_t>& values, const char* name, const std::string& who) {
  check(values.size() == 2, who, ": ", name, " must have 2 values, got ", shape_str(values));
}

void need_image(const std::vector<int64_t>& shape, const std::string& who) {
  check(shape.size() == 3, who, ": needs [C, H, W] inputs, but gets ", shape_str(shape));
}


}  // namespace

std::vector<int64_t> same_padding(const std::vector<int64_t>& kernel, const std::vector<int64_t>& dilation,
                                  const std::string& who) {
  std::vector<int64_t> padding;
  for (size_t i = 0; i < kernel.size(); ++i) {
    const int64_t total = (i < dilation.size() ? dilation[i] : 1) * (kernel[i] - 1);
    check(total % 2 == 0, who, ": padding='same' with this kernel pads unevenly");
    padding.push_back(total / 2);
  }
  return padding;
}

Graph::Graph(std::vector<int64_t> input_shape) {
  check(!input_shape.empty(), "export_model: input_shape is empty");
  for (auto d : input_shape) check(d > 0, "export_model: input_shape must be positive, got ", shape_str(input_shape));
  shapes_.push_back(std::move(input_shape));
}

void Graph::check_value(int64_t x, const std::string& who) const {
  check(x >= 0 && x < static_cast<int64_t>(shapes_.size()), who, ": reads value ", x, ", which does not exist");
}

int64_t Graph::add(Node node, std::vector<int64_t> shape) {
  nodes_.push_back(std::move(node));
  shapes_.push_back(std::move(shape));
  return static_cast<int64_t>(nodes_.size());
}

int64_t Graph::linear(int64_t x, const torch::Tensor& weight, const torch::Tensor& bias, const std::string& who) {
  check_value(x, who);
  check(weight.defined() && weight.dim() == 2, who, ": has no 2-D weight");
  const auto& in = shape(x);
  check(in.size() == 1, who, ": needs flat inputs but gets ", shape_str(in),
        " per sample (flatten first, or check ExportOptions::input_shape)");
  const int64_t out_features = weight.size(0), in_features = weight.size(1);
  check(in_features == in[0], who, ": takes ", in_features, " features but its input has ", in[0],
        " (check ExportOptions::input_shape)");
  Node node{"Linear", {x}};
  add_weights(node, weight, bias, who);
  node.ints = {{"in_features", in_features}, {"out_features", out_features}};
  return add(std::move(node), {out_features});
}

int64_t Graph::conv(int64_t x, const Conv& c, const std::string& who) {
  check_value(x, who);
  check(c.weight.defined() && c.weight.dim() == 4, who, ": has no 4-D weight");
  need_pair(c.stride, "stride", who);
  need_pair(c.padding, "padding", who);
  need_pair(c.dilation, "dilation", who);
  const auto& in = shape(x);
  need_image(in, who);
  const int64_t out_channels = c.weight.size(0), group_in = c.weight.size(1);
  check(c.groups > 0 && out_channels % c.groups == 0, who, ": groups ", c.groups, " must divide its ", out_channels,
        " output channels");
  check(group_in * c.groups == in[0], who, ": takes ", group_in * c.groups, " channels but its input has ", in[0]);
  check(c.dilation[0] > 0 && c.dilation[1] > 0, who, ": dilation must be positive, got ", shape_str(c.dilation));
  const std::vector<int64_t> kernel{c.weight.size(2), c.weight.size(3)};
  const int64_t oh = slide(in[1], c.dilation[0] * (kernel[0] - 1) + 1, c.stride[0], c.padding[0], who);
  const int64_t ow = slide(in[2], c.dilation[1] * (kernel[1] - 1) + 1, c.stride[1], c.padding[1], who);
  Node node{"Conv2d", {x}};
  add_weights(node, c.weight, c.bias, who);
  node.ints = {{"in_channels", in[0]}, {"out_channels", out_channels}, {"groups", c.groups}};
  node.arrays = {{"kernel_size", kernel}, {"stride", c.stride}, {"padding", c.padding}, {"dilation", c.dilation}};
  return add(std::move(node), {out_channels, oh, ow});
}

// Eval-mode BatchNorm is an affine map per channel: y = x * g + (beta - mean * g), with
// g = gamma / sqrt(var + eps). After a Linear/Conv2d it is folded into its weights:
// w' = w * g, b' = (b - mean) * g + beta. Computed in double.
int64_t Graph::batch_norm(int64_t x, const BatchNorm& bn, bool fold, const std::string& who) {
  check_value(x, who);
  const auto& in = shape(x);
  check(!in.empty(), who, ": needs an input with channels");
  const int64_t channels = in[0];
  check(bn.mean.defined() && bn.var.defined(), who,
        ": has no running statistics (track_running_stats=false), so it cannot be exported");
  check(bn.mean.numel() == channels && bn.var.numel() == channels, who, ": has ", bn.mean.numel(),
        " channels but its input has ", channels);
  const auto mean = cpu_double(bn.mean).reshape({-1});
  const auto var = cpu_double(bn.var).reshape({-1});
  const auto gamma = bn.weight.defined() ? cpu_double(bn.weight).reshape({-1}) : torch::ones_like(mean);
  const auto beta = bn.bias.defined() ? cpu_double(bn.bias).reshape({-1}) : torch::zeros_like(mean);
  check(bn.eps >= 0 && (var + bn.eps).gt(0).all().item<bool>(), who, ": running_var + eps must be > 0");
  const auto scale = gamma / torch::sqrt(var + bn.eps);
  Node* producer = x > 0 ? &nodes_[static_cast<size_t>(x - 1)] : nullptr;
  if (fold && producer != nullptr && (producer->type == "Linear" || producer->type == "Conv2d")) {
    std::vector<int64_t> per_channel(static_cast<size_t>(producer->weight.dim()), 1);
    per_channel[0] = channels;
    producer->weight = (cpu_double(producer->weight) * scale.view(per_channel)).to(torch::kFloat).contiguous();
    producer->bias = ((cpu_double(producer->bias) - mean) * scale + beta).to(torch::kFloat).contiguous();
    check_finite(producer->weight, who, "folded weight");
    check_finite(producer->bias, who, "folded bias");
    return x;
  }
  Node node{"Affine", {x}};
  node.weight = scale.to(torch::kFloat).contiguous();
  node.bias = (beta - mean * scale).to(torch::kFloat).contiguous();
  check_finite(node.weight, who, "scale");
  check_finite(node.bias, who, "shift");
  return add(std::move(node), in);
}

int64_t Graph::pool(const std::string& type, int64_t x, const Pool& p, const std::string& who) {
  check_value(x, who);
  need_pair(p.kernel, "kernel_size", who);
  const auto stride = p.stride.empty() ? p.kernel : p.stride;  // PyTorch: stride defaults to the kernel
  need_pair(stride, "stride", who);
  need_pair(p.padding, "padding", who);
  check(p.dilation == std::vector<int64_t>{1, 1}, who, ": dilation must be 1, got ", shape_str(p.dilation));
  check(!p.ceil_mode, who, ": ceil_mode must be off");
  check(!p.divisor_override, who, ": divisor_override is not supported");
  check(p.padding[0] >= 0 && p.padding[1] >= 0 && 2 * p.padding[0] <= p.kernel[0] && 2 * p.padding[1] <= p.kernel[1],
        who, ": padding must be at most half the kernel, got ", shape_str(p.padding));
  const auto& in = shape(x);
  need_image(in, who);
  const int64_t oh = slide(in[1], p.kernel[0], stride[0], p.padding[0], who);
  const int64_t ow = slide(in[2], p.kernel[1], stride[1], p.padding[1], who);
  Node node{type, {x}};
  node.arrays = {{"kernel_size", p.kernel}, {"stride", stride}, {"padding", p.padding}};
  if (type == "AvgPool2d") node.ints = {{"count_include_pad", p.count_include_pad ? 1 : 0}};
  return add(std::move(node), {in[0], oh, ow});
}

int64_t Graph::global_avg_pool(int64_t x, const std::string& who) {
  check_value(x, who);
  const auto& in = shape(x);
  need_image(in, who);
  return add(Node{"GlobalAvgPool2d", {x}}, {in[0], 1, 1});
}

int64_t Graph::flatten(int64_t x, int64_t start_dim, int64_t end_dim, const std::string& who) {
  check_value(x, who);
  const auto in = shape(x);
  const auto rank = static_cast<int64_t>(in.size()) + 1;  // with the batch
  const int64_t start = start_dim < 0 ? start_dim + rank : start_dim;
  const int64_t end = end_dim < 0 ? end_dim + rank : end_dim;
  check(start >= 0 && end < rank && start <= end, who, ": start_dim ", start_dim, " and end_dim ", end_dim,
        " do not fit a ", rank, "-D input");
  if (start == end) return x;
  check(start >= 1, who, ": flattens the batch dimension into the others; only start_dim >= 1 is supported");
  std::vector<int64_t> out(in.begin(), in.begin() + (start - 1));
  out.push_back(std::accumulate(in.begin() + (start - 1), in.begin() + end, int64_t{1}, std::multiplies<int64_t>()));
  out.insert(out.end(), in.begin() + end, in.end());
  if (out == in) return x;
  Node node{out.size() == 1 ? "Flatten" : "Reshape", {x}};
  if (out.size() != 1) node.arrays = {{"shape", out}};
  return add(std::move(node), out);
}

int64_t Graph::reshape(int64_t x, std::vector<int64_t> out, const std::string& who) {
  check_value(x, who);
  const auto in = shape(x);
  const int64_t size = numel(in);
  check(!out.empty(), who, ": reshapes each sample to a scalar, which the runtime does not support");
  const auto unknown = std::count(out.begin(), out.end(), -1);
  check(unknown <= 1, who, ": more than one -1 in ", shape_str(out));
  int64_t known = 1;
  for (auto d : out) {
    check(d == -1 || d > 0, who, ": cannot reshape ", shape_str(in), " to ", shape_str(out), " per sample");
    if (d > 0) known *= d;
  }
  if (unknown == 1) {
    check(size % known == 0, who, ": cannot reshape ", shape_str(in), " to ", shape_str(out), " per sample");
    std::replace(out.begin(), out.end(), int64_t{-1}, size / known);
  }
  check(numel(out) == size, who, ": cannot reshape ", shape_str(in), " to ", shape_str(out), " per sample");
  if (out == in) return x;
  Node node{out.size() == 1 ? "Flatten" : "Reshape", {x}};
  if (out.size() != 1) node.arrays = {{"shape", out}};
  return add(std::move(node), out);
}

int64_t Graph::unary(int64_t x, Node node) {
  check_value(x, "export_model: " + node.type);
  node.inputs = {x};
  return add(std::move(node), shape(x));
}

int64_t Graph::binary(const std::string& type, int64_t a, int64_t b, const std::string& who) {
  check_value(a, who);
  check_value(b, who);
  const auto &sa = shape(a), &sb = shape(b);
  check(sa == sb || per_channel_of(sb, sa) || per_channel_of(sa, sb), who, ": cannot combine ", shape_str(sa),
        " with ", shape_str(sb), "; the runtime needs equal shapes, or one value per channel of the other");
  const auto out = per_channel_of(sa, sb) && sa != sb ? sb : sa;
  return add(Node{type, {a, b}}, out);
}

int64_t Graph::concat(const std::vector<int64_t>& xs, const std::string& who) {
  check(!xs.empty(), who, ": has no inputs");
  for (auto x : xs) check_value(x, who);
  if (xs.size() == 1) return xs[0];
  auto out = shape(xs[0]);
  check(!out.empty(), who, ": needs inputs with channels");
  for (size_t i = 1; i < xs.size(); ++i) {
    const auto& s = shape(xs[i]);
    check(s.size() == out.size() && std::equal(s.begin() + 1, s.end(), out.begin() + 1), who, ": cannot concatenate ",
          shape_str(shape(xs[0])), " and ", shape_str(s), " on channels");
    out[0] += s[0];
  }
  return add(Node{"Concat", xs}, out);
}

int64_t Graph::finish(int64_t output) const {
  check(!nodes_.empty(), "export_model: the model has no layers to export");
  check(output == static_cast<int64_t>(nodes_.size()), "export_model: the model's output is not its last operation");
  const auto& out = shape(output);
  check(out.size() == 1, "export_model: the model gives ", shape_str(out),
        " per input; the runtime needs [num_classes] logits (end with a flatten and a linear layer)");
  return out[0];
}

void Graph::write(H5::H5File& file, const std::string& arch, const ExportOptions& options) const {
  using namespace kdistill::detail;
  write_string_attr(file, "format", runtime_format::kFormat);
  write_string_attr(file, "kdistill_version", kVersion);
  write_string_attr(file, "arch", arch);
  write_ints_attr(file, "input_shape", input_shape());
  write_int_attr(file, "num_classes", shapes_.back().at(0));
  write_double_attr(file, "mean", options.mean());
  write_double_attr(file, "std", options.std());
  H5::Group group = file.createGroup("nodes");
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    H5::Group g = group.createGroup(std::to_string(i));
    write_string_attr(g, "type", n.type);
    write_ints_attr(g, "inputs", n.inputs);
    for (const auto& [name, value] : n.ints) write_int_attr(g, name, value);
    for (const auto& [name, values] : n.arrays) write_ints_attr(g, name, values);
    for (const auto& [name, value] : n.doubles) write_double_attr(g, name, value);
    for (const auto& [name, value] : n.strings) write_string_attr(g, name, value);
    if (n.weight.defined()) write_dataset(g, "weight", n.weight);
    if (n.bias.defined()) write_dataset(g, "bias", n.bias);
  }
}

}  // namespace kdistill::export_plan
