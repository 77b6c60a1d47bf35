#include "kdistill/models/model.h"

#include <filesystem>
#include <sstream>

#include <torch/csrc/jit/api/module.h>
#include <torch/script.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/io/atomic_file.h"

namespace kdistill {
Model::Model(std::shared_ptr<torch::nn::Module> module, std::function<torch::Tensor(const torch::Tensor&)> forward,
             std::string arch)
    : module_(std::move(module)), forward_(std::move(forward)), arch_(std::move(arch)), taps_(detail::make_tap_cache()) {
  check(module_ != nullptr, "Model: module is null");
  check(static_cast<bool>(forward_), "Model: forward function is empty");
}

Model::Model(torch::jit::Module module, std::string arch)
    : script_(std::make_shared<torch::jit::Module>(std::move(module))), arch_(std::move(arch)),
      taps_(detail::make_tap_cache()) {}

Model Model::load_torchscript(const std::string& path, const torch::Device& device) {
  check(std::filesystem::is_regular_file(path), "load_torchscript: ", path, " does not exist or is not a file");
  try {
    return Model(torch::jit::load(path, device), "torchscript");
  } catch (const c10::Error& e) {
    fail("load_torchscript: ", path, " is not a loadable TorchScript archive: ", first_line(e.what_without_backtrace()));
  }
}

Model Model::optimized_for_inference() const {
  check(defined(), "optimized_for_inference: the model is empty");
  check(is_torchscript(), "optimized_for_inference: '", arch_, "' is a C++ module; only TorchScript models can be "
        "frozen (script it first, or serve it with the Eigen runtime)");
  try {
    auto copy = script_->clone();
    copy.eval();
    return Model(torch::jit::optimize_for_inference(copy), arch_);
  } catch (const c10::Error& e) {
    fail("optimized_for_inference: '", arch_, "' cannot be frozen: ", first_line(e.what_without_backtrace()));
  } catch (const std::exception& e) {
    fail("optimized_for_inference: '", arch_, "' cannot be frozen: ", first_line(e.what()));
  }
}

namespace {

torch::Tensor to_float(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 ? t.to(torch::kFloat) : t;
}

}  // namespace

Model Model::with_precision(Precision precision) const {
  check(defined(), "Model::with_precision: the model is empty");
  if (precision == Precision::kFloat32) return *this;
  Model m;
  if (script_) {
    auto copy = script_->clone();
    copy.to(torch::kBFloat16);
    m = Model(copy, arch_);
  } else if (auto seq = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(module_)) {
    auto copy = std::dynamic_pointer_cast<torch::nn::SequentialImpl>(seq->clone());
    copy->to(torch::kBFloat16);
    m = Model(torch::nn::Sequential(copy), arch_);
  } else {
    m = *this;
    m.taps_ = detail::make_tap_cache();
    m.autocast_ = true;
  }
  m.train(is_training());
  m.precision_ = precision;
  return m;
}

torch::Tensor Model::forward(const torch::Tensor& input) {
  if (precision_ == Precision::kFloat32) return raw_forward(input);
  if (autocast_) {
    AutocastGuard bf16(input.device(), precision_);
    return to_float(raw_forward(input));
  }
  return to_float(raw_forward(input.is_floating_point() ? input.to(torch::kBFloat16) : input));
}

torch::Tensor Model::raw_forward(const torch::Tensor& input) {
  check(defined(), "Model::forward: the model is empty");
  if (script_) {
    auto out = script_->forward({input});
    check(out.isTensor(), "Model::forward: the TorchScript model returned a ", out.tagKind(), ", expected a Tensor");
    return out.toTensor();
  }
  return forward_(input);
}

std::vector<std::pair<std::string, torch::Tensor>> Model::named_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  if (script_) {
    for (const auto& p : script_->named_parameters(/*recurse=*/true)) out.emplace_back(p.name, p.value);
  } else if (module_) {
    for (const auto& p : module_->named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  }
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> Model::named_buffers() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  if (script_) {
    for (const auto& b : script_->named_buffers(/*recurse=*/true)) out.emplace_back(b.name, b.value);
  } else if (module_) {
    for (const auto& b : module_->named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  }
  return out;
}

std::vector<torch::Tensor> Model::parameters() const {
  std::vector<torch::Tensor> out;
  for (auto& p : named_parameters()) out.push_back(p.second);
  return out;
}

int64_t Model::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : named_parameters()) n += p.second.numel();
  return n;
}

void Model::train(bool on) {
  if (script_) script_->train(on);
  if (module_) module_->train(on);
}

bool Model::is_training() const {
  if (script_) return script_->is_training();
  return module_ && module_->is_training();
}

void Model::to(const torch::Device& device) {
  if (script_) script_->to(device);
  if (module_) module_->to(device);
}

torch::Device Model::device() const {
  auto params = named_parameters();
  return params.empty() ? torch::Device(torch::kCPU) : params.front().second.device();
}

void Model::save(const std::string& path) const {
  check(defined(), "Model::save: the model is empty");
  io::atomic_write(path, [&](const std::string& tmp) {
    if (script_) {
      script_->save(tmp);
    } else {
      torch::serialize::OutputArchive archive;
      module_->save(archive);
      archive.save_to(tmp);
    }
  });
}

int64_t Model::serialized_bytes() const {
  check(defined(), "Model::serialized_bytes: the model is empty");
  std::ostringstream out;
  if (script_) {
    script_->save(out);
  } else {
    torch::serialize::OutputArchive archive;
    module_->save(archive);
    archive.save_to(out);
  }
  return static_cast<int64_t>(out.str().size());
}

void Model::load_weights(const std::string& path) {
  check(defined(), "Model::load_weights: the model is empty");
  check(std::filesystem::is_regular_file(path), "Model::load_weights: ", path, " does not exist or is not a file");
  if (script_) {
    auto loaded = load_torchscript(path, device());
    auto src = loaded.named_parameters();
    auto dst = named_parameters();
    check(src.size() == dst.size(), "Model::load_weights: ", path, " has ", src.size(), " parameters, the model ",
          dst.size());
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < dst.size(); ++i) {
      check(src[i].first == dst[i].first && src[i].second.sizes() == dst[i].second.sizes(), "Model::load_weights: ",
            path, ": parameter ", src[i].first, " ", src[i].second.sizes(), " does not match ", dst[i].first, " ",
            dst[i].second.sizes());
      dst[i].second.copy_(src[i].second);
    }
    return;
  }
  // LibTorch's loader replaces each tensor without comparing shapes: keep the old values, check
  // every shape afterwards, and put the old values back on a mismatch.
  auto before = named_parameters();
  auto before_buffers = named_buffers();
  before.insert(before.end(), before_buffers.begin(), before_buffers.end());
  std::vector<torch::Tensor> saved;
  for (auto& kv : before) saved.push_back(kv.second.detach().clone());
  auto restore = [&] {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < before.size(); ++i) before[i].second.set_data(saved[i]);
  };
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path, device());
    module_->load(archive);
  } catch (const c10::Error& e) {
    restore();
    fail("Model::load_weights: ", path, " does not hold this model's weights: ", first_line(e.what_without_backtrace()));
  }
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i].second.sizes() != saved[i].sizes()) {
      auto got = before[i].second.sizes().vec();
      restore();
      fail("Model::load_weights: ", path, ": ", before[i].first, " has shape ", torch::IntArrayRef(got),
           " but the model's is ", saved[i].sizes());
    }
  }
}

}  // namespace kdistill
