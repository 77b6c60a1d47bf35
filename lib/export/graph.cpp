#include "export/graph.h"

#include <algorithm>
#include <limits>
#include <string>
#include <unordered_map>
#include <utility>

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/freeze_module.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "runtime/format.h"

namespace kdistill::export_plan {
namespace {

namespace jit = torch::jit;
using runtime_format::shape_str;

constexpr const char* kSupportedOps =
    "aten::linear, matmul, mm and addmm (with constant weights), conv2d and _convolution (grouped, depthwise, "
    "strided, padded, dilated), batch_norm (folded into the convolution or linear before it, else an affine "
    "node), relu, relu6, hardtanh, gelu, silu, hardswish, hardsigmoid, tanh, sigmoid, max_pool2d, avg_pool2d, "
    "adaptive_avg_pool2d (to 1x1), mean over H and W, flatten, reshape, view, add and mul of two tensors, cat on "
    "channels, dropout (removed), contiguous, detach";

// The batch size, unknown when exporting, where a size is computed from the input.
constexpr int64_t kBatch = std::numeric_limits<int64_t>::min();

bool is_tensor(const jit::Value* v) { return v->type()->kind() == c10::TypeKind::TensorType; }

// " at model.py:12 (`return self.fc(x)`)": where TorchScript recorded the node.
std::string origin(const jit::Node* node) {
  auto range = node->sourceRange();
  if (auto generated = range.findSourceRangeThatGenerated()) range = *generated;
  std::string out;
  if (auto flc = range.file_line_col()) out = " at " + std::get<0>(*flc) + ":" + std::to_string(std::get<1>(*flc));
  // The whole line the node came from.
  std::string text;
  if (range.source()) {
    const std::string all = range.source()->text_str().str();
    const size_t at = std::min(range.start(), all.size());
    const size_t begin = at == 0 ? 0 : all.rfind('\n', at - 1) + 1;  // npos + 1 is 0
    text = all.substr(begin, all.find('\n', at) - begin);
    text.erase(0, text.find_first_not_of(" \t"));
  }
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  if (!text.empty()) out += " (`" + text + "`)";
  return out;
}

class Reader {
 public:
  explicit Reader(Graph& graph) : graph_(graph) {}

  void bind(const jit::Value* v, int64_t value) { tensors_[v] = value; }
  int64_t value_of(const jit::Value* v, const std::string& who) const {
    const auto it = tensors_.find(v);
    if (it != tensors_.end()) return it->second;
    if (jit::toIValue(v).has_value()) {
      fail(who, ": a constant tensor takes the place of an activation; only the model's input and the results of "
                "supported operations may be");
    }
    fail(who, ": its input comes from ", v->node()->kind().toQualString(), ", which is not supported; supported: ",
         kSupportedOps);
  }

  void walk(const jit::Block* block) {
    for (const jit::Node* n : block->nodes()) {
      const std::string kind = n->kind().toQualString();
      if (kind == "prim::If") {
        branch(n);
        continue;
      }
      if (kind == "prim::RaiseException") {
        fail(who(n), ": the model raises an exception here for inputs of shape ", shape_str(graph_.input_shape()));
      }
      check(kind != "prim::Loop", who(n), ": loops are not supported; supported: ", kSupportedOps);
      const auto outputs = n->outputs();
      const bool makes_tensor = std::any_of(outputs.begin(), outputs.end(), is_tensor);
      if (!makes_tensor || kind == "prim::Constant" || kind == "prim::NumToTensor") continue;  // evaluated where used
      op(n, kind);
    }
  }

 private:
  static std::string who(const jit::Node* n) {
    return std::string("export_model: ") + n->kind().toQualString() + origin(n);
  }

  // A branch on a condition known when exporting (a check of the input's rank, say): the branch
  // taken is read in its place.
  void branch(const jit::Node* n) {
    const auto cond = eval(n->input(0), who(n));
    check(cond.isBool(), who(n), ": branches on a ", cond.tagKind(), ", not a bool");
    const jit::Block* taken = n->blocks()[cond.toBool() ? 0 : 1];
    walk(taken);
    for (size_t i = 0; i < n->outputs().size(); ++i) {
      const auto it = tensors_.find(taken->outputs()[i]);
      if (it != tensors_.end()) bind(n->outputs()[i], it->second);
    }
  }

  // A value that does not depend on the input's data: a constant, or computed from constants and
  // the input's shape (the batch size is kBatch).
  c10::IValue eval(const jit::Value* v, const std::string& who) {
    if (auto constant = jit::toIValue(v)) return *constant;
    const jit::Node* n = v->node();
    const std::string kind = n->kind().toQualString();
    auto in = [&](size_t i) { return eval(n->input(i), who); };
    auto index = [&](int64_t i, size_t size) {
      const int64_t s = static_cast<int64_t>(size);
      check(i >= -s && i < s, who, ": index ", i, " is out of range for ", size, " values", origin(n));
      return static_cast<size_t>(i < 0 ? i + s : i);
    };
    if (kind == "aten::size" || kind == "aten::dim") {
      const auto& shape = graph_.shape(value_of(n->input(0), who));
      std::vector<int64_t> dims{kBatch};
      dims.insert(dims.end(), shape.begin(), shape.end());
      if (kind == "aten::dim") return static_cast<int64_t>(dims.size());
      if (n->inputs().size() == 1) return c10::IValue(dims);
      return dims[index(in(1).toInt(), dims.size())];
    }
    if (kind == "aten::len") return static_cast<int64_t>(in(0).toListRef().size());
    if (kind == "aten::__getitem__") {
      const auto list = in(0);
      const auto& items = list.toListRef();
      return items[index(in(1).toInt(), items.size())];
    }
    if (kind == "prim::ListConstruct") {
      c10::impl::GenericList items(c10::AnyType::get());
      bool ints = true;
      for (size_t i = 0; i < n->inputs().size(); ++i) {
        items.push_back(in(i));
        ints = ints && items.get(i).isInt();
      }
      if (!ints) return items;
      std::vector<int64_t> values;
      for (size_t i = 0; i < items.size(); ++i) values.push_back(items.get(i).toInt());
      return values;
    }
    if (kind == "aten::Int" || kind == "prim::NumToTensor" || kind == "aten::ScalarImplicit" ||
        kind == "aten::IntImplicit") {
      return in(0);
    }
    if (kind == "aten::eq" || kind == "aten::ne" || kind == "aten::lt" || kind == "aten::le" || kind == "aten::gt" ||
        kind == "aten::ge") {
      const auto a = in(0), b = in(1);
      check(a.isInt() && b.isInt(), who, ": compares a ", a.tagKind(), " with a ", b.tagKind(), origin(n));
      const int64_t x = a.toInt(), y = b.toInt();
      check(x != kBatch && y != kBatch, who, ": depends on the batch size", origin(n));
      if (kind == "aten::eq") return x == y;
      if (kind == "aten::ne") return x != y;
      if (kind == "aten::lt") return x < y;
      if (kind == "aten::le") return x <= y;
      if (kind == "aten::gt") return x > y;
      return x >= y;
    }
    if (kind == "aten::__not__") return !in(0).toBool();
    if (kind == "aten::list_with_default") {  // (list of optional ints, the defaults for the Nones)
      const auto list = in(0), defaults = in(1);
      const auto& items = list.toListRef();
      const auto& fallback = defaults.toListRef();
      std::vector<int64_t> values;
      for (size_t i = 0; i < items.size(); ++i) {
        const auto& item = items[i].isNone() ? fallback.at(fallback.size() - items.size() + i) : items[i];
        values.push_back(item.toInt());
      }
      return values;
    }
    if (kind == "prim::If") {
      const auto cond = in(0);
      const jit::Block* taken = n->blocks()[cond.toBool() ? 0 : 1];
      const auto outputs = n->outputs();
      const auto at = std::find(outputs.begin(), outputs.end(), v) - outputs.begin();
      return eval(taken->outputs()[static_cast<size_t>(at)], who);
    }
    fail(who, ": needs a value computed at run time by ", kind, origin(n), "; only constants and sizes are supported");
  }

  c10::IValue arg(const jit::Node* n, size_t i) { return eval(n->input(i), who(n)); }

  int64_t int_arg(const jit::Node* n, size_t i, const char* name) {
    const auto v = arg(n, i);
    check(v.isInt() && v.toInt() != kBatch, who(n), ": its ", name, " must be a constant integer");
    return v.toInt();
  }

  bool bool_arg(const jit::Node* n, size_t i, const char* name) {
    const auto v = arg(n, i);
    check(v.isBool(), who(n), ": its ", name, " must be a constant bool, got a ", v.tagKind());
    return v.toBool();
  }

  double number_arg(const jit::Node* n, size_t i, const char* name) {
    const auto v = arg(n, i);
    check(v.isDouble() || v.isInt(), who(n), ": its ", name, " must be a constant number, got a ", v.tagKind());
    return v.isDouble() ? v.toDouble() : static_cast<double>(v.toInt());
  }

  // Integers (a list, or one for every dimension); with `pair`, one is used for both of 2. With
  // `batch`, an element may be the batch size (kBatch).
  std::vector<int64_t> ints_arg(const jit::Node* n, size_t i, const char* name, bool pair = true, bool batch = false) {
    const auto v = arg(n, i);
    std::vector<int64_t> out;
    if (v.isInt()) {
      out.assign(pair ? 2 : 1, v.toInt());
    } else if (v.isList()) {
      for (const auto& e : v.toListRef()) {
        check(e.isInt() && (batch || e.toInt() != kBatch), who(n), ": its ", name, " must be constant integers");
        out.push_back(e.toInt());
      }
    } else {
      fail(who(n), ": its ", name, " must be constant integers, got a ", v.tagKind());
    }
    if (pair && out.size() == 1) out.push_back(out[0]);
    return out;
  }

  torch::Tensor weight_arg(const jit::Node* n, size_t i, const char* name) {
    const auto v = jit::toIValue(n->input(i));
    check(v.has_value() && (v->isTensor() || v->isNone()), who(n), ": its ", name,
          " must be a constant tensor (a parameter of the frozen module)");
    return v->isTensor() ? v->toTensor() : torch::Tensor();
  }

  int64_t tensor_arg(const jit::Node* n, size_t i) { return value_of(n->input(i), who(n)); }

  // A reshape's target: the batch first (from x.size(0), or -1), then the per-sample shape.
  int64_t reshape(const jit::Node* n, int64_t x) {
    const auto dims = ints_arg(n, 1, "shape", false, true);
    check(!dims.empty() && (dims[0] == kBatch || dims[0] == -1), who(n),
          ": only reshapes that keep the batch first (x.reshape(x.size(0), ...)) are supported, got ",
          dims.empty() ? std::string("[]") : std::to_string(dims[0]), " first");
    std::vector<int64_t> per_sample(dims.begin() + 1, dims.end());
    for (auto d : per_sample) check(d != kBatch, who(n), ": moves the batch dimension");
    if (dims[0] == -1) {
      check(std::find(per_sample.begin(), per_sample.end(), -1) == per_sample.end(), who(n),
            ": with -1 as the batch, every other dimension must be known");
    }
    return graph_.reshape(x, per_sample, who(n));
  }

  // The conv2d family: weight and bias at 1 and 2, stride at 3, padding at 4 (numbers, or
  // "same"/"valid"), dilation at 5, groups at `groups_at`.
  int64_t conv(const jit::Node* n, size_t groups_at) {
    Conv c;
    c.weight = weight_arg(n, 1, "weight");
    c.bias = weight_arg(n, 2, "bias");
    check(c.weight.defined() && c.weight.dim() == 4, who(n), ": its weight must be 4-D");
    c.stride = ints_arg(n, 3, "stride");
    c.dilation = ints_arg(n, 5, "dilation");
    c.groups = int_arg(n, groups_at, "groups");
    const auto padding = arg(n, 4);
    if (padding.isString()) {
      const auto& mode = padding.toStringRef();
      check(mode == "same" || mode == "valid", who(n), ": padding \"", mode, "\" is not supported");
      c.padding = mode == "valid" ? std::vector<int64_t>{0, 0}
                                  : same_padding({c.weight.size(2), c.weight.size(3)}, c.dilation, who(n));
    } else {
      c.padding = ints_arg(n, 4, "padding");
    }
    return graph_.conv(tensor_arg(n, 0), c, who(n));
  }

  // A pooling window: kernel_size, stride and padding at 1, 2 and 3.
  Pool window(const jit::Node* n) {
    Pool p;
    p.kernel = ints_arg(n, 1, "kernel_size");
    p.stride = ints_arg(n, 2, "stride");
    p.padding = ints_arg(n, 3, "padding");
    return p;
  }

  int64_t activation(const jit::Node* n, const std::string& op) {
    Node node;
    if (op == "relu") {
      node.type = "ReLU";
    } else if (op == "relu6" || op == "hardtanh") {
      node.type = "Hardtanh";
      const double lo = op == "relu6" ? 0.0 : number_arg(n, 1, "min_val");
      const double hi = op == "relu6" ? 6.0 : number_arg(n, 2, "max_val");
      node.doubles = {{"min_val", lo}, {"max_val", hi}};
    } else if (op == "gelu") {
      node.type = "GELU";
      const auto approximate = n->inputs().size() > 1 ? arg(n, 1) : c10::IValue(std::string("none"));
      check(approximate.isString() &&
                (approximate.toStringRef() == "none" || approximate.toStringRef() == "tanh"),
            who(n), ": approximate must be \"none\" or \"tanh\"");
      node.strings = {{"approximate", approximate.toStringRef()}};
    } else if (op == "silu") {
      node.type = "SiLU";
    } else if (op == "hardswish") {
      node.type = "Hardswish";
    } else if (op == "hardsigmoid") {
      node.type = "Hardsigmoid";
    } else if (op == "tanh") {
      node.type = "Tanh";
    } else {
      node.type = "Sigmoid";
    }
    return graph_.unary(tensor_arg(n, 0), std::move(node));
  }

  void op(const jit::Node* n, const std::string& kind) {
    const std::string w = who(n);
    std::string op = kind.rfind("aten::", 0) == 0 ? kind.substr(6) : kind;
    // An in-place op is read as its functional form when nothing reads its input after it.
    if (op.size() > 1 && op.back() == '_' && op.compare(0, 2, "__") != 0) {
      op.pop_back();
      for (const auto& use : n->input(0)->uses()) {
        check(use.user == n || !use.user->isAfter(n), w,
              ": changes its input in place, and the input is read again afterwards; write it out of place");
      }
    }
    int64_t out = -1;
    if (op == "linear") {
      out = graph_.linear(tensor_arg(n, 0), weight_arg(n, 1, "weight"), weight_arg(n, 2, "bias"), w);
    } else if (op == "matmul" || op == "mm") {
      const auto weight = weight_arg(n, 1, "second operand");
      check(weight.defined() && weight.dim() == 2, w, ": only a product with a constant 2-D weight is supported");
      out = graph_.linear(tensor_arg(n, 0), weight.t(), torch::Tensor(), w);
    } else if (op == "addmm") {  // (bias, input, weight^T, beta, alpha)
      const auto weight = weight_arg(n, 2, "weight");
      check(weight.defined() && weight.dim() == 2, w, ": only a product with a constant 2-D weight is supported");
      check(number_arg(n, 3, "beta") == 1.0 && number_arg(n, 4, "alpha") == 1.0, w, ": beta and alpha must be 1");
      out = graph_.linear(tensor_arg(n, 1), weight.t(), weight_arg(n, 0, "bias"), w);
    } else if (op == "conv2d" || op == "_convolution_mode") {  // (x, w, b, stride, padding, dilation, groups)
      out = conv(n, 6);
    } else if (op == "_convolution") {  // (..., dilation, transposed, output_padding, groups, ...)
      check(!bool_arg(n, 6, "transposed"), w, ": transposed convolutions are not supported");
      out = conv(n, 8);
    } else if (op == "batch_norm") {  // (x, weight, bias, mean, var, training, momentum, eps, cudnn)
      check(!bool_arg(n, 5, "training"), w, ": runs in training mode");
      BatchNorm bn{weight_arg(n, 3, "running_mean"), weight_arg(n, 4, "running_var"), weight_arg(n, 1, "weight"),
                   weight_arg(n, 2, "bias"), number_arg(n, 7, "eps")};
      // Folded only into the convolution or linear layer whose output it alone reads: through an
      // identity (a dropout, say) the same output may have other readers.
      const std::string producer = n->input(0)->node()->kind().toQualString();
      const bool fold = n->input(0)->uses().size() == 1 &&
                        (producer == "aten::conv2d" || producer == "aten::_convolution" ||
                         producer == "aten::_convolution_mode" || producer == "aten::linear" ||
                         producer == "aten::matmul" || producer == "aten::mm" || producer == "aten::addmm");
      out = graph_.batch_norm(tensor_arg(n, 0), bn, fold, w);
    } else if (op == "relu" || op == "relu6" || op == "hardtanh" || op == "gelu" || op == "silu" ||
               op == "hardswish" || op == "hardsigmoid" || op == "tanh" || op == "sigmoid") {
      out = activation(n, op);
    } else if (op == "max_pool2d") {  // (x, kernel, stride, padding, dilation, ceil_mode)
      Pool p = window(n);
      p.dilation = ints_arg(n, 4, "dilation");
      p.ceil_mode = bool_arg(n, 5, "ceil_mode");
      out = graph_.pool("MaxPool2d", tensor_arg(n, 0), p, w);
    } else if (op == "avg_pool2d") {  // (x, kernel, stride, padding, ceil_mode, count_include_pad, divisor)
      Pool p = window(n);
      p.ceil_mode = bool_arg(n, 4, "ceil_mode");
      p.count_include_pad = bool_arg(n, 5, "count_include_pad");
      p.divisor_override = !arg(n, 6).isNone();
      out = graph_.pool("AvgPool2d", tensor_arg(n, 0), p, w);
    } else if (op == "adaptive_avg_pool2d") {
      check(ints_arg(n, 1, "output_size") == std::vector<int64_t>{1, 1}, w,
            ": only an output size of 1x1 (global average pooling) is supported");
      out = graph_.global_avg_pool(tensor_arg(n, 0), w);
    } else if (op == "mean") {  // (x, dims, keepdim, dtype)
      const int64_t x = tensor_arg(n, 0);
      const auto rank = static_cast<int64_t>(graph_.shape(x).size()) + 1;
      check(n->inputs().size() >= 3, w, ": only a mean over dimensions 2 and 3 is supported");
      auto dims = ints_arg(n, 1, "dim", false);
      for (auto& d : dims) d = d < 0 ? d + rank : d;
      std::sort(dims.begin(), dims.end());
      check(rank == 4 && dims == std::vector<int64_t>{2, 3}, w,
            ": only a mean over H and W of [N, C, H, W] (dimensions 2 and 3) is supported");
      check(n->inputs().size() < 4 || arg(n, 3).isNone(), w, ": a dtype is not supported");
      out = graph_.global_avg_pool(x, w);
      if (!bool_arg(n, 2, "keepdim")) out = graph_.flatten(out, 1, -1, w);
    } else if (op == "flatten") {
      out = graph_.flatten(tensor_arg(n, 0), int_arg(n, 1, "start_dim"), int_arg(n, 2, "end_dim"), w);
    } else if (op == "reshape" || op == "view") {
      out = reshape(n, tensor_arg(n, 0));
    } else if (op == "add" || op == "mul") {
      check(is_tensor(n->input(1)), w, ": only the ", op, " of two tensors is supported");
      if (op == "add") check(number_arg(n, 2, "alpha") == 1.0, w, ": alpha must be 1");
      out = graph_.binary(op == "add" ? "Add" : "Mul", tensor_arg(n, 0), tensor_arg(n, 1), w);
    } else if (op == "cat") {
      const jit::Node* list = n->input(0)->node();
      check(list->kind() == c10::prim::ListConstruct, w, ": its tensors must be a list written in place");
      std::vector<int64_t> xs;
      for (const jit::Value* v : list->inputs()) xs.push_back(value_of(v, w));
      check(!xs.empty(), w, ": has no inputs");
      const auto rank = static_cast<int64_t>(graph_.shape(xs[0]).size()) + 1;
      int64_t dim = int_arg(n, 1, "dim");
      dim = dim < 0 ? dim + rank : dim;
      check(dim == 1, w, ": only concatenation on channels (dimension 1) is supported");
      out = graph_.concat(xs, w);
    } else if (op == "dropout" || op == "feature_dropout" || op == "alpha_dropout" || op == "feature_alpha_dropout") {
      check(!bool_arg(n, 2, "train"), w, ": runs in training mode");
      out = tensor_arg(n, 0);
    } else if (op == "contiguous" || op == "detach" || op == "clone") {
      out = tensor_arg(n, 0);
    } else {
      fail(w, " is not supported; supported: ", kSupportedOps);
    }
    bind(n->output(0), out);
  }

  Graph& graph_;
  std::unordered_map<const jit::Value*, int64_t> tensors_;
};

// An MLP's input width comes from its first linear layer: the first operation, past any
// flatten, reshape and dropout, must be one.
std::vector<int64_t> infer_input_shape(const jit::Graph& graph) {
  for (const jit::Node* n : graph.nodes()) {
    const std::string kind = n->kind().toQualString();
    const auto outputs = n->outputs();
    if (!std::any_of(outputs.begin(), outputs.end(), is_tensor) || kind == "prim::Constant" ||
        kind == "prim::NumToTensor") {
      continue;
    }
    if (kind == "aten::flatten" || kind == "aten::reshape" || kind == "aten::view" || kind == "aten::dropout" ||
        kind == "aten::contiguous") {
      continue;
    }
    const auto weight = n->inputs().size() > 1 ? jit::toIValue(n->input(1)) : c10::nullopt;
    if (kind == "aten::linear" && weight && weight->isTensor() && weight->toTensor().dim() == 2) {
      return {weight->toTensor().size(1)};
    }
    fail("export_model: ExportOptions::input_shape is needed for a model that starts with ", kind);
  }
  fail("export_model: the model has no layers");
}

}  // namespace

std::unique_ptr<Graph> from_torchscript(const torch::jit::Module& module, const std::vector<int64_t>& input_shape,
                                        int64_t& output) {
  std::shared_ptr<jit::Graph> graph;
  try {
    jit::Module copy = module.clone();
    copy.eval();
    jit::Module frozen = jit::freeze_module(copy);
    graph = frozen.get_method("forward").graph()->copy();
    jit::Inline(*graph);
    jit::ConstantPropagation(graph);
    jit::EliminateDeadCode(graph);
  } catch (const c10::Error& e) {
    fail("export_model: cannot freeze the TorchScript module's forward: ", first_line(e.what_without_backtrace()));
  }
  check(graph->inputs().size() == 2, "export_model: the model's forward must take one tensor, it takes ",
        graph->inputs().size() - 1, " arguments");
  check(graph->outputs().size() == 1 && is_tensor(graph->outputs()[0]),
        "export_model: the model's forward must return one tensor of logits");
  auto result = std::make_unique<Graph>(input_shape.empty() ? infer_input_shape(*graph) : input_shape);
  Reader reader(*result);
  reader.bind(graph->inputs()[1], 0);
  reader.walk(graph->block());
  output = reader.value_of(graph->outputs()[0], "export_model: the model's output");
  return result;
}

}  // namespace kdistill::export_plan
