// Feature taps: a model's intermediate outputs by submodule path, without module hooks (LibTorch
// has none) and without the user rewriting `forward`.
//
// - TorchScript: the forward graph is copied, the calls on the way to each tapped submodule are
//   inlined (three-argument inlineCallTo, so nested call boundaries survive), and the tapped
//   values are returned in a tuple with the logits. The rewritten function is cached per name set.
// - C++ Sequential children: the Sequential's type-erased slot for the child is swapped, for one
//   call, for a wrapper that runs the child and records its output.
// - Other C++ submodules that own parameters: a thread-local RecordFunction callback watches the
//   top-level operations of the forward pass; the last one that reads the submodule's parameters
//   gives its output (conv2d, linear, batch_norm, layer_norm, embedding are single operations).
#include <ATen/record_function.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/torch.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "kdistill/core/error.h"
#include "kdistill/models/model.h"

namespace kdistill {
namespace detail {

struct TapCache {
  std::mutex mutex;
  std::map<std::vector<std::string>, std::shared_ptr<torch::jit::GraphFunction>> script;
};

std::shared_ptr<TapCache> make_tap_cache() { return std::make_shared<TapCache>(); }

}  // namespace detail

namespace {

namespace jit = torch::jit;

std::string join(const std::vector<std::string>& parts, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s += (i ? "." : "") + parts[i];
  return s;
}

std::string list(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s.empty() ? "(none)" : s;
}

[[noreturn]] void unknown(const Model& m, const std::string& name, const std::string& why) {
  fail("forward_with_features: '", name, "' ", why, " in model '", m.arch(), "'; tappable names: ",
       list(m.feature_names()));
}

// The dotted attribute path from `self` to `v`, or false when `v` is not such a chain.
bool attr_path(jit::Value* v, jit::Value* self, std::string& path) {
  std::vector<std::string> parts;
  while (v != self) {
    auto* n = v->node();
    if (n->kind() != c10::prim::GetAttr) return false;
    parts.insert(parts.begin(), n->s(c10::attr::name));
    v = n->input(0);
  }
  path = join(parts, parts.size());
  return true;
}

bool is_prefix(const std::string& prefix, const std::string& name) {
  return name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 && name[prefix.size()] == '.';
}

std::shared_ptr<jit::GraphFunction> build_script_taps(const Model& model, jit::Module& module,
                                                      const std::vector<std::string>& names) {
  auto& forward = jit::toGraphFunction(module.get_method("forward").function());
  auto graph = forward.graph()->copy();
  jit::Value* self = graph->inputs().at(0);
  std::map<std::string, jit::Value*> found;
  // Inline, one at a time, the top-level calls that lead to a tapped submodule, until every name
  // is found or no call on a path is left.
  // A call "leads to" a wanted name when its receiver is that name's prefix; any method of such a
  // receiver may (self._forward_impl(x) in torchvision's ResNet), a submodule's forward on a
  // strict prefix does. The output of a wanted submodule is its forward's return value.
  auto leads_to = [&](const std::string& path, bool strict) {
    return std::any_of(names.begin(), names.end(), [&](const std::string& w) {
      return found.count(w) == 0 && (path.empty() || is_prefix(path, w) || (!strict && path == w));
    });
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (auto* n : graph->nodes()) {
      if (n->kind() != c10::prim::CallMethod) continue;
      std::string path;
      if (!attr_path(n->input(0), self, path)) continue;
      const bool is_forward = n->s(c10::attr::name) == "forward";
      const bool wanted = is_forward && found.count(path) == 0 &&
                          std::find(names.begin(), names.end(), path) != names.end();
      if (is_forward ? leads_to(path, /*strict=*/true) : leads_to(path, /*strict=*/false)) {
        auto cls = n->input(0)->type()->expect<c10::ClassType>();
        auto& callee = jit::toGraphFunction(cls->getMethod(n->s(c10::attr::name)));
        auto outs = jit::inlineCallTo(n, &callee, callee.graph().get());
        if (wanted) found[path] = outs.at(0);
        changed = true;
        break;  // the node list changed
      }
      if (wanted) found[path] = n->output();
    }
  }
  std::vector<jit::Value*> outputs{graph->outputs().at(0)};
  for (const auto& name : names) {
    auto it = found.find(name);
    if (it == found.end()) {
      const auto all = model.feature_names();
      if (std::find(all.begin(), all.end(), name) == all.end()) unknown(model, name, "is not a submodule");
      unknown(model, name, "is a submodule that forward() does not call at its top level (only in a branch or loop, "
              "or never)");
    }
    check(it->second->type()->kind() == c10::TypeKind::TensorType, "forward_with_features: '", name,
          "' returns a ", it->second->type()->str(), ", not a Tensor, in model '", model.arch(), "'");
    // A later in-place operation (ReLU(inplace=True) after a BatchNorm) would change the tapped
    // value: return a copy made right where the submodule returned it.
    jit::WithInsertPoint at(it->second->node()->next());
    outputs.push_back(graph->insert(c10::aten::clone, {it->second}));
  }
  jit::WithInsertPoint at(graph->return_node());
  auto* tuple = graph->insertNode(graph->createTuple(outputs));
  graph->eraseOutput(0);
  graph->registerOutput(tuple->output());
  return std::make_shared<jit::GraphFunction>("forward_with_features", graph, nullptr);
}

// --- C++ modules ---------------------------------------------------------------------------

// Runs one Sequential child and records its output under a name.
struct RecordingChildImpl : torch::nn::Module {
  RecordingChildImpl(torch::nn::AnyModule inner, std::string name, std::map<std::string, torch::Tensor>* sink)
      : inner_(std::move(inner)), name_(std::move(name)), sink_(sink) {}
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = inner_.any_forward(x);
    auto* t = y.try_get<torch::Tensor>();
    check(t != nullptr, "forward_with_features: Sequential child '", name_, "' does not return a Tensor");
    (*sink_)[name_] = t->clone();  // a later in-place operation must not change the feature
    return *t;
  }
  torch::nn::AnyModule inner_;
  std::string name_;
  std::map<std::string, torch::Tensor>* sink_;
};

// Swaps recording wrappers into Sequential slots and puts the children back when it dies.
class SequentialSwap {
 public:
  void swap(torch::nn::SequentialImpl& seq, size_t index, const std::string& name,
            std::map<std::string, torch::Tensor>* sink) {
    auto slot = seq.begin() + static_cast<std::ptrdiff_t>(index);
    saved_.emplace_back(&seq, index, *slot);
    *slot = torch::nn::AnyModule(std::make_shared<RecordingChildImpl>(*slot, name, sink));
  }
  ~SequentialSwap() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      *(std::get<0>(*it)->begin() + static_cast<std::ptrdiff_t>(std::get<1>(*it))) = std::get<2>(*it);
    }
  }

 private:
  std::vector<std::tuple<torch::nn::SequentialImpl*, size_t, torch::nn::AnyModule>> saved_;
};

// What the RecordFunction callbacks of this thread watch. The operation's inputs are only valid
// in the start callback (the dispatcher frees them before the end callback runs): the start
// callback notes which watched modules a top-level operation reads, the end callback records its
// output for them.
struct ParamWatch {
  std::vector<std::pair<std::string, std::set<const c10::TensorImpl*>>> modules;
  std::map<std::string, torch::Tensor>* sink = nullptr;
  int depth = 0;
  std::vector<const std::string*> pending;  // modules whose parameters the running top-level op reads
};
thread_local ParamWatch* t_watch = nullptr;

std::unique_ptr<at::ObserverContext> on_op_start(const at::RecordFunction& fn) {
  if (!t_watch || t_watch->depth++ != 0) return nullptr;  // only operations the model's code called itself
  t_watch->pending.clear();
  for (const auto& in : fn.inputs()) {
    if (!in.isTensor() || !in.toTensor().defined()) continue;
    const auto* impl = in.toTensor().unsafeGetTensorImpl();
    for (const auto& [name, params] : t_watch->modules) {
      if (params.count(impl)) t_watch->pending.push_back(&name);
    }
  }
  return nullptr;
}

void on_op_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (!t_watch || --t_watch->depth != 0 || t_watch->pending.empty()) return;
  const auto& outs = fn.outputs();
  if (!outs.empty() && outs[0].isTensor()) {
    // A copy, as for the other taps: a later in-place operation must not change the feature.
    for (const auto* name : t_watch->pending) (*t_watch->sink)[*name] = outs[0].toTensor().clone();
  }
  t_watch->pending.clear();
}

class ParamWatchScope {
 public:
  explicit ParamWatchScope(ParamWatch* watch) {
    check(t_watch == nullptr, "forward_with_features: nested tapped forward passes on one thread are not supported");
    t_watch = watch;
    handle_ = at::addThreadLocalCallback(
        at::RecordFunctionCallback(on_op_start, on_op_end).needsInputs(true).needsOutputs(true));
  }
  ~ParamWatchScope() {
    at::removeCallback(handle_);
    t_watch = nullptr;
  }

 private:
  at::CallbackHandle handle_;
};

std::map<std::string, std::shared_ptr<torch::nn::Module>> cpp_modules(const torch::nn::Module& root) {
  std::map<std::string, std::shared_ptr<torch::nn::Module>> out;
  for (const auto& item : root.named_modules("", /*include_self=*/false)) out[item.key()] = item.value();
  return out;
}

// The Sequential slot whose output is `name`'s output: `name`'s own slot when its parent is a
// Sequential, or, when `name` is itself a non-empty Sequential, its last child's slot (found the
// same way). Null when there is none.
torch::nn::SequentialImpl* sequential_slot(torch::nn::Module& root,
                                           const std::map<std::string, std::shared_ptr<torch::nn::Module>>& mods,
                                           const std::string& name, size_t& index) {
  const auto self = mods.find(name);
  if (self == mods.end()) return nullptr;
  if (auto* own = dynamic_cast<torch::nn::SequentialImpl*>(self->second.get()); own && own->size() > 0) {
    index = own->size() - 1;
    return own;
  }
  const auto dot = name.rfind('.');
  const std::string parent = dot == std::string::npos ? "" : name.substr(0, dot);
  const std::string child = dot == std::string::npos ? name : name.substr(dot + 1);
  torch::nn::Module* p = &root;
  if (!parent.empty()) {
    auto it = mods.find(parent);
    if (it == mods.end()) return nullptr;
    p = it->second.get();
  }
  auto* seq = dynamic_cast<torch::nn::SequentialImpl*>(p);
  if (seq == nullptr || child.empty() || !std::all_of(child.begin(), child.end(), ::isdigit)) return nullptr;
  index = std::stoul(child);
  if (index >= seq->size() || seq->ptr(index) != self->second) return nullptr;
  return seq;
}

// A module whose whole forward is one operation on its own parameters (Linear, Conv, BatchNorm,
// LayerNorm, Embedding, ...): the last top-level operation reading them gives its output.
bool is_leaf_with_parameters(const torch::nn::Module& m) {
  return m.children().empty() && !m.parameters(/*recurse=*/false).empty();
}

}  // namespace

ForwardOutput Model::forward_with_features(const torch::Tensor& input, const std::vector<std::string>& names) {
  if (precision_ == Precision::kFloat32) return raw_forward_with_features(input, names);
  ForwardOutput out;
  if (autocast_) {
    AutocastGuard bf16(input.device(), precision_);
    out = raw_forward_with_features(input, names);
  } else {
    out = raw_forward_with_features(input.is_floating_point() ? input.to(torch::kBFloat16) : input, names);
  }
  auto to_float = [](const torch::Tensor& t) { return t.scalar_type() == torch::kBFloat16 ? t.to(torch::kFloat) : t; };
  out.logits = to_float(out.logits);
  for (auto& [name, f] : out.features) f = to_float(f);
  return out;
}

ForwardOutput Model::raw_forward_with_features(const torch::Tensor& input, const std::vector<std::string>& names) {
  ForwardOutput out;
  if (names.empty()) {
    out.logits = raw_forward(input);
    return out;
  }
  check(defined(), "Model::forward_with_features: the model is empty");
  for (size_t i = 0; i < names.size(); ++i) {
    check(std::find(names.begin(), names.begin() + static_cast<std::ptrdiff_t>(i), names[i]) ==
              names.begin() + static_cast<std::ptrdiff_t>(i),
          "forward_with_features: '", names[i], "' is asked for twice");
  }
  if (script_) {
    std::shared_ptr<jit::GraphFunction> fn;
    {
      std::lock_guard<std::mutex> lock(taps_->mutex);
      auto& slot = taps_->script[names];
      if (!slot) slot = build_script_taps(*this, *script_, names);
      fn = slot;
    }
    auto result = (*fn)({script_->_ivalue(), input});
    auto elems = result.toTupleRef().elements();
    check(elems.at(0).isTensor(), "Model::forward_with_features: the TorchScript model returned a ",
          elems.at(0).tagKind(), ", expected a Tensor");
    out.logits = elems.at(0).toTensor();
    for (size_t i = 0; i < names.size(); ++i) out.features[names[i]] = elems.at(i + 1).toTensor();
    return out;
  }

  const auto mods = cpp_modules(*module_);
  SequentialSwap swaps;
  ParamWatch watch;
  watch.sink = &out.features;
  for (const auto& name : names) {
    auto it = mods.find(name);
    if (it == mods.end()) unknown(*this, name, "is not a submodule");
    size_t index = 0;
    if (auto* seq = sequential_slot(*module_, mods, name, index)) {
      swaps.swap(*seq, index, name, &out.features);
    } else if (is_leaf_with_parameters(*it->second)) {
      std::set<const c10::TensorImpl*> params;
      for (const auto& p : it->second->parameters(/*recurse=*/false)) params.insert(p.unsafeGetTensorImpl());
      watch.modules.emplace_back(name, std::move(params));
    } else {
      unknown(*this, name, "is neither a child of a Sequential, a Sequential, nor a submodule with parameters and "
              "no children (C++ modules have no hooks: wrap it in a Sequential)");
    }
  }
  if (watch.modules.empty()) {
    out.logits = raw_forward(input);
  } else {
    ParamWatchScope scope(&watch);
    out.logits = raw_forward(input);
  }
  for (const auto& name : names) {
    check(out.features.count(name) == 1, "forward_with_features: submodule '", name, "' of model '", arch_,
          "' did not run in this forward pass");
  }
  return out;
}

std::vector<std::string> Model::feature_names() const {
  std::vector<std::string> out;
  if (script_) {
    for (const auto& m : script_->named_modules()) {
      if (!m.name.empty()) out.push_back(m.name);
    }
  } else if (module_) {
    const auto mods = cpp_modules(*module_);
    for (const auto& item : module_->named_modules("", /*include_self=*/false)) {
      size_t index = 0;
      if (sequential_slot(*module_, mods, item.key(), index) || is_leaf_with_parameters(*item.value())) {
        out.push_back(item.key());
      }
    }
  }
  return out;
}

}  // namespace kdistill
