#include "kdistill/export/export.h"

#include <H5Cpp.h>

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <torch/torch.h>

#include "export/graph.h"
#include "export/plan.h"
#include "io/hdf5_util.h"
#include "kdistill/core/error.h"
#include "runtime/format.h"

namespace kdistill {
namespace {

namespace nn = torch::nn;
using export_plan::Graph;
using runtime_format::shape_str;

constexpr const char* kSupported =
    "Flatten, Linear, Conv2d, BatchNorm1d, BatchNorm2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d (to 1x1), ReLU, "
    "ReLU6, GELU, SiLU, Tanh, Sigmoid, Dropout, Identity";

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
std::vector<int64_t> cpp_conv_padding(Padding& padding, const export_plan::Conv& c, const std::string& who) {
  using std::get_if;
  if (const auto* pad = get_if<torch::ExpandingArray<2>>(&padding)) return to_vector(*pad);
  if (get_if<torch::enumtype::kValid>(&padding) != nullptr) return {0, 0};
  return export_plan::same_padding({c.weight.size(2), c.weight.size(3)}, c.dilation, who);
}

template <typename Mode>
bool cpp_zero_padding_mode(Mode& mode) {
  using std::get_if;
  return get_if<torch::enumtype::kZeros>(&mode) != nullptr;
}

// The layers of a Sequential, nested Sequentials flattened, each with its name ("3", "2.1").
void flatten_sequential(const std::shared_ptr<nn::Module>& module, const std::string& name,
                        std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>& out) {
  if (auto seq = std::dynamic_pointer_cast<nn::SequentialImpl>(module)) {
    for (const auto& child : seq->named_children()) {
      flatten_sequential(child.value(), name.empty() ? child.key() : name + "." + child.key(), out);
    }
    return;
  }
  out.emplace_back(name, module);
}

// An MLP's input width comes from its first Linear; anything else needs the shape given.
std::vector<int64_t> cpp_input_shape(const std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>& layers,
                                     const std::vector<int64_t>& given) {
  if (!given.empty()) return given;
  for (const auto& [name, module] : layers) {
    nn::Module* m = module.get();
    if (dynamic_cast<nn::FlattenImpl*>(m) || dynamic_cast<nn::DropoutImpl*>(m) || dynamic_cast<nn::IdentityImpl*>(m)) {
      continue;
    }
    if (auto* p = dynamic_cast<nn::LinearImpl*>(m)) return {p->weight.size(1)};
    fail("export_model: ExportOptions::input_shape is needed for a model that starts with ", cpp_kind(*m));
  }
  fail("export_model: the model has no layers");
}

template <typename BatchNormImpl>
export_plan::BatchNorm cpp_batch_norm(const BatchNormImpl& p) {
  return {p.running_mean, p.running_var, p.weight, p.bias, p.options.eps()};
}

// A C++ Sequential, layer by layer, into `graph`; returns the output value.
int64_t from_sequential(const std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>& layers, Graph& graph) {
  int64_t x = 0;
  for (const auto& [name, module] : layers) {
    nn::Module* m = module.get();
    const std::string kind = cpp_kind(*m);
    const std::string who = "export_model: layer " + name + " (" + kind + ")";
    auto activation = [&](const char* type) { x = graph.unary(x, {type}); };
    if (auto* p = dynamic_cast<nn::LinearImpl*>(m)) {
      x = graph.linear(x, p->weight, p->bias, who);
    } else if (auto* p = dynamic_cast<nn::Conv2dImpl*>(m)) {
      check(cpp_zero_padding_mode(p->options.padding_mode()), who,
            ": only zero padding is supported (padding_mode='zeros')");
      export_plan::Conv c;
      c.weight = p->weight;
      c.bias = p->bias;
      c.stride = to_vector(p->options.stride());
      c.dilation = to_vector(p->options.dilation());
      c.groups = p->options.groups();
      c.padding = cpp_conv_padding(p->options.padding(), c, who);
      x = graph.conv(x, c, who);
    } else if (auto* p = dynamic_cast<nn::BatchNorm1dImpl*>(m)) {
      x = graph.batch_norm(x, cpp_batch_norm(*p), true, who);
    } else if (auto* p = dynamic_cast<nn::BatchNorm2dImpl*>(m)) {
      x = graph.batch_norm(x, cpp_batch_norm(*p), true, who);
    } else if (auto* p = dynamic_cast<nn::MaxPool2dImpl*>(m)) {
      export_plan::Pool pool;
      pool.kernel = to_vector(p->options.kernel_size());
      pool.stride = to_vector(p->options.stride());
      pool.padding = to_vector(p->options.padding());
      pool.dilation = to_vector(p->options.dilation());
      pool.ceil_mode = p->options.ceil_mode();
      x = graph.pool("MaxPool2d", x, pool, who);
    } else if (auto* p = dynamic_cast<nn::AvgPool2dImpl*>(m)) {
      export_plan::Pool pool;
      pool.kernel = to_vector(p->options.kernel_size());
      pool.stride = to_vector(p->options.stride());
      pool.padding = to_vector(p->options.padding());
      pool.ceil_mode = p->options.ceil_mode();
      pool.count_include_pad = p->options.count_include_pad();
      pool.divisor_override = p->options.divisor_override().has_value();
      x = graph.pool("AvgPool2d", x, pool, who);
    } else if (auto* p = dynamic_cast<nn::AdaptiveAvgPool2dImpl*>(m)) {
      const auto size = p->options.output_size();
      check(size->at(0) == 1 && size->at(1) == 1, who, ": only an output size of 1x1 is supported");
      x = graph.global_avg_pool(x, who);
    } else if (auto* p = dynamic_cast<nn::FlattenImpl*>(m)) {
      x = graph.flatten(x, p->options.start_dim(), p->options.end_dim(), who);
    } else if (auto* p = dynamic_cast<nn::GELUImpl*>(m)) {
      const std::string approximate = p->options.approximate();
      check(approximate == "none" || approximate == "tanh", who, ": approximate must be \"none\" or \"tanh\", got \"",
            approximate, "\"");
      export_plan::Node node{"GELU"};
      node.strings = {{"approximate", approximate}};
      x = graph.unary(x, std::move(node));
    } else if (dynamic_cast<nn::ReLUImpl*>(m) != nullptr) {
      activation("ReLU");
    } else if (dynamic_cast<nn::ReLU6Impl*>(m) != nullptr) {
      export_plan::Node node{"Hardtanh"};
      node.doubles = {{"min_val", 0.0}, {"max_val", 6.0}};
      x = graph.unary(x, std::move(node));
    } else if (dynamic_cast<nn::SiLUImpl*>(m) != nullptr) {
      activation("SiLU");
    } else if (dynamic_cast<nn::TanhImpl*>(m) != nullptr) {
      activation("Tanh");
    } else if (dynamic_cast<nn::SigmoidImpl*>(m) != nullptr) {
      activation("Sigmoid");
    } else if (dynamic_cast<nn::DropoutImpl*>(m) == nullptr && dynamic_cast<nn::IdentityImpl*>(m) == nullptr) {
      fail("export_model: layer ", name, " (", kind, ") is not supported; supported: ", kSupported);
    }
  }
  return x;
}

// The model itself, in eval mode on zeros, must give [1, num_classes]: a wrong input_shape shows
// up here.
void check_forward(const Model& model, const std::vector<int64_t>& input_shape, int64_t num_classes) {
  Model m = model;  // shares the module
  TrainingModeGuard<Model> eval(m, false);
  torch::NoGradGuard no_grad;
  std::vector<int64_t> dims{1};
  dims.insert(dims.end(), input_shape.begin(), input_shape.end());
  const auto params = m.parameters();
  const auto dtype = params.empty() ? torch::kFloat : params.front().scalar_type();
  torch::Tensor out;
  try {
    out = m.forward(torch::zeros(dims, torch::TensorOptions().dtype(dtype).device(m.device())));
  } catch (const c10::Error& e) {
    fail("export_model: the model's forward on an input of shape ", shape_str(dims),
         " failed (check ExportOptions::input_shape): ", first_line(e.what_without_backtrace()));
  }
  check(out.dim() == 2 && out.size(0) == 1 && out.size(1) == num_classes, "export_model: the model returns ",
        out.sizes(), " for one input, but the exported graph gives [1, ", num_classes, "]");
}

}  // namespace

void export_model(const Model& model, const std::string& path, const ExportOptions& options) {
  check(model.defined(), "export_model: the model is empty");
  check(!path.empty(), "export_model: path is empty");
  check(std::isfinite(options.mean()), "export_model: mean must be finite, got ", options.mean());
  check(std::isfinite(options.std()) && options.std() > 0, "export_model: std must be finite and > 0, got ",
        options.std());
  torch::NoGradGuard no_grad;
  std::unique_ptr<Graph> graph;
  int64_t output = 0;
  if (model.is_torchscript()) {
    graph = export_plan::from_torchscript(*model.script(), options.input_shape(), output);
  } else {
    const auto module = model.module();
    check(std::dynamic_pointer_cast<nn::SequentialImpl>(module) != nullptr,
          "export_model: a C++ model must be a torch::nn::Sequential to be exported (a TorchScript model may be any "
          "module); this model is a ", cpp_kind(*module));
    std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> layers;
    flatten_sequential(module, "", layers);
    graph = std::make_unique<Graph>(cpp_input_shape(layers, options.input_shape()));
    output = from_sequential(layers, *graph);
  }
  const int64_t num_classes = graph->finish(output);
  check_forward(model, graph->input_shape(), num_classes);
  detail::write_h5("export_model", path, [&](H5::H5File& file) { graph->write(file, model.arch(), options); });
}

}  // namespace kdistill
