#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include "kdistill/core/precision.h"

// TorchScript modules appear only by reference here; <torch/script.h>, with its loader and
// interpreter headers, is for the files that run them.
namespace torch::jit {
struct Module;
}  // namespace torch::jit

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

namespace detail {
struct TapCache;
std::shared_ptr<TapCache> make_tap_cache();
}

/// A model's logits and the intermediate outputs ("features") asked for by name.
struct ForwardOutput {
  torch::Tensor logits;
  std::map<std::string, torch::Tensor> features;
};

/// One handle over a C++ `torch::nn::Module` or a TorchScript `torch::jit::Module`.
///
/// Trainers, teachers and benchmarks take a `Model`, so a model defined in C++ and one exported
/// from Python with `torch.jit.script`/`torch.jit.trace` are used the same way. Copies share the
/// underlying module (like `torch::nn::ModuleHolder`).
///
/// Example:
/// ```
/// kdistill::Model a(kdistill::mlp(784, {64}, 10));          // C++ module
/// auto b = kdistill::Model::load_torchscript("teacher.pt");  // exported from Python
/// auto logits = a.forward(torch::randn({8, 1, 28, 28}));
/// ```
class Model {
 public:
  Model() = default;

  /// Wraps a C++ module holder whose `forward` takes and returns one tensor.
  template <typename Impl>
  Model(torch::nn::ModuleHolder<Impl> module, std::string arch = "")  // NOLINT: implicit by design
      : Model(std::static_pointer_cast<torch::nn::Module>(module.ptr()),
              [p = module.ptr()](const torch::Tensor& x) { return p->forward(x); }, std::move(arch)) {}

  /// Wraps any C++ module with an explicit forward function.
  Model(std::shared_ptr<torch::nn::Module> module, std::function<torch::Tensor(const torch::Tensor&)> forward,
        std::string arch = "");

  /// Wraps a TorchScript module.
  explicit Model(torch::jit::Module module, std::string arch = "torchscript");

  /// Loads a TorchScript file (`torch.jit.save` from Python, or `Model::save` of a TorchScript model).
  /// Throws `kdistill::Error` naming the file when it is missing or not a TorchScript archive.
  static Model load_torchscript(const std::string& path, const torch::Device& device = torch::kCPU);

  /// Whether this handle holds a model.
  bool defined() const { return module_ != nullptr || script_ != nullptr; }
  /// Whether it holds a TorchScript module.
  bool is_torchscript() const { return script_ != nullptr; }
  /// A short description, e.g. "mlp:64" or "torchscript".
  const std::string& arch() const { return arch_; }

  /// Logits for a batch of inputs.
  torch::Tensor forward(const torch::Tensor& input);
  torch::Tensor operator()(const torch::Tensor& input) { return forward(input); }

  /// Logits and the outputs of the named submodules (feature taps), from one forward pass,
  /// without rewriting the model's `forward`. Gradients flow through both. With no names this is
  /// `forward`, at no extra cost.
  ///
  /// Names are submodule paths, as in `named_parameters` without the parameter:
  /// - TorchScript: any submodule whose `forward` its parent's `forward` calls at the top level
  ///   (not inside a branch or loop), at any depth: `layer1.0.conv1`, `features.3`. The module's
  ///   forward graph is copied, the calls on the path are inlined and the tapped values returned
  ///   with the logits; the rewritten graph is built once per set of names and cached.
  /// - C++ modules: any child of a `torch::nn::Sequential`, at any depth (`features.3`, or `2`
  ///   when the model is a Sequential), and any Sequential (its last child's output): the
  ///   Sequential runs a recording wrapper in that child's place for this call; and any leaf
  ///   submodule that owns parameters (`block2.conv`, a Linear, a BatchNorm, ...) wherever its
  ///   parent calls it: its output is the last top-level operation that reads its parameters,
  ///   observed through LibTorch's RecordFunction callbacks. A custom module with children that is
  ///   not in a Sequential has no tap (wrap it in one).
  /// A tapped value is a copy where the model could change it in place later (TorchScript), so a
  /// feature is the submodule's output as it was returned. If a submodule runs twice in one
  /// forward, the first call's output is returned (TorchScript) or the last (C++ RecordFunction
  /// taps). A tapped C++ Sequential must not be run by another thread during the call.
  ///
  /// Throws `kdistill::Error` for an unknown or untappable name, listing `feature_names()`.
  ///
  /// Example:
  /// ```
  /// auto out = model.forward_with_features(x, {"layer2", "layer3"});
  /// auto hint = torch::mse_loss(adapter(out.features["layer2"]), teacher_features["layer3"]);
  /// ```
  ForwardOutput forward_with_features(const torch::Tensor& input, const std::vector<std::string>& names);

  /// The submodule paths `forward_with_features` accepts for this model, in module order.
  std::vector<std::string> feature_names() const;

  /// Trainable parameters, in a stable order.
  std::vector<torch::Tensor> parameters() const;
  /// Parameters by name ("0.weight", ...), in the same order.
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;
  /// Buffers by name (BatchNorm running statistics, ...).
  std::vector<std::pair<std::string, torch::Tensor>> named_buffers() const;
  /// Total element count of the parameters.
  int64_t num_parameters() const;

  /// Switches training mode (dropout, batch-norm statistics) on or off.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const;
  /// Moves parameters and buffers to `device`.
  void to(const torch::Device& device);
  /// The device of the first parameter (CPU for a model without parameters).
  torch::Device device() const;

  /// Saves the model: TorchScript models as a TorchScript archive (readable by Python's
  /// `torch.jit.load`); C++ modules as a LibTorch archive of parameters and buffers.
  void save(const std::string& path) const;
  /// Size in bytes of what `save` writes.
  int64_t serialized_bytes() const;
  /// Loads parameters and buffers saved by `save` into this model (same architecture).
  void load_weights(const std::string& path);

  /// A copy of a TorchScript model prepared for serving: eval mode, frozen (parameters become
  /// constants, so it can no longer be trained) and passed through LibTorch's
  /// `optimize_for_inference` (e.g. batch norms folded into convolutions, linear weights
  /// pre-transposed). This model is left as it is. Outputs agree with the original to float
  /// rounding. MLP-64 at batch 1 on the reference machine: 20 µs as loaded, 15 µs optimized.
  /// The copy has no parameters (they are constants), so it can be neither trained nor exported
  /// to the Eigen runtime (export the original); it may be specialised to its current device, so
  /// move the model with `to()` before optimizing, not after. Throws `kdistill::Error` for an
  /// empty model, for a C++ module (script it first, or serve it with the Eigen runtime), and when
  /// LibTorch cannot freeze the model.
  ///
  /// Example:
  /// ```
  /// auto serving = kdistill::Model::load_torchscript("student.pt").optimized_for_inference();
  /// ```
  Model optimized_for_inference() const;

  /// A copy that computes in `precision` and still takes and returns float32 tensors.
  ///
  /// bf16: TorchScript models and C++ `Sequential`s get a bfloat16 copy of their weights (inputs
  /// are cast to bf16, outputs back to float32): measured fastest on CPUs with AVX512-BF16 (the
  /// 784-1200-1200-10 MLP at batch 128: 3.9 ms fp32, 2.2 ms under autocast, 1.6 ms with bf16
  /// weights, 2 threads). Other C++ modules cannot be copied generically and share this model's
  /// weights under bf16 autocast. fp32: this model. For inference and teachers; train through
  /// `TrainerOptions::precision`, which keeps float32 master weights.
  ///
  /// Example:
  /// ```
  /// auto fast = teacher.with_precision(kdistill::Precision::kBFloat16);
  /// auto logits = fast.forward(x);   // float32 logits, bf16 compute
  /// ```
  Model with_precision(Precision precision) const;
  /// The precision `forward` computes in.
  Precision precision() const { return precision_; }

  /// The C++ module, or nullptr for a TorchScript model.
  std::shared_ptr<torch::nn::Module> module() const { return module_; }
  /// The TorchScript module, or nullptr for a C++ model.
  std::shared_ptr<torch::jit::Module> script() const { return script_; }

 private:
  std::shared_ptr<torch::nn::Module> module_;
  std::function<torch::Tensor(const torch::Tensor&)> forward_;
  std::shared_ptr<torch::jit::Module> script_;
  std::string arch_;
  std::shared_ptr<detail::TapCache> taps_;  // shared by copies: rewritten graphs by name set
  Precision precision_ = Precision::kFloat32;
  bool autocast_ = false;  // bf16 by autocast over float32 weights (no bf16 copy could be made)

  torch::Tensor raw_forward(const torch::Tensor& input);
  ForwardOutput raw_forward_with_features(const torch::Tensor& input, const std::vector<std::string>& names);
};

/// Puts a model (or anything with `is_training()` and `train(bool)`, such as an objective) in
/// training or eval mode for a scope, and gives it back its previous mode when the scope ends,
/// however it ends.
///
/// Example:
/// ```
/// {
///   kdistill::TrainingModeGuard<kdistill::Model> eval(model, false);
///   auto logits = model.forward(x);  // eval mode
/// }                                  // model's earlier mode again
/// ```
template <typename M>
class TrainingModeGuard {
 public:
  TrainingModeGuard(M& m, bool training) : m_(m), was_(m.is_training()) { m_.train(training); }
  ~TrainingModeGuard() { m_.train(was_); }
  TrainingModeGuard(const TrainingModeGuard&) = delete;
  TrainingModeGuard& operator=(const TrainingModeGuard&) = delete;

 private:
  M& m_;
  bool was_;
};

}  // namespace kdistill
#pragma GCC visibility pop
