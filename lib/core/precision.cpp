#include "kdistill/core/precision.h"

#include <ATen/autocast_mode.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include <atomic>
#include <fstream>
#include <sstream>

#include "kdistill/core/error.h"
#include "kdistill/core/logging.h"

namespace kdistill {
namespace {

// PyTorch 2.4 replaced the per-device autocast setters with device-type arguments.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool enabled(bool cuda) { return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU); }
void set_enabled(bool cuda, bool on) { at::autocast::set_autocast_enabled(cuda ? at::kCUDA : at::kCPU, on); }
c10::ScalarType dtype(bool cuda) { return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU); }
void set_dtype(bool cuda, c10::ScalarType t) { at::autocast::set_autocast_dtype(cuda ? at::kCUDA : at::kCPU, t); }
#else
bool enabled(bool cuda) { return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled(); }
void set_enabled(bool cuda, bool on) { cuda ? at::autocast::set_enabled(on) : at::autocast::set_cpu_enabled(on); }
c10::ScalarType dtype(bool cuda) {
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_dtype(bool cuda, c10::ScalarType t) {
  cuda ? at::autocast::set_autocast_gpu_dtype(t) : at::autocast::set_autocast_cpu_dtype(t);
}
#endif

}  // namespace

Precision parse_precision(const std::string& text, const std::string& who) {
  if (text == "fp32") return Precision::kFloat32;
  if (text == "bf16") return Precision::kBFloat16;
  check(text != "fp16", who, ": fp16 is not supported: it needs dynamic loss scaling, which LibTorch's C++ API does "
        "not provide; use bf16 (same speed on recent hardware, no scaling needed)");
  fail(who, ": expected fp32 or bf16, got \"", text, "\"");
}

const char* to_string(Precision precision) { return precision == Precision::kBFloat16 ? "bf16" : "fp32"; }

std::string cpu_bf16_support() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    bool amx = false, avx512 = false;
    for (std::string w; words >> w;) {
      amx = amx || w == "amx_bf16";
      avx512 = avx512 || w == "avx512_bf16";
    }
    return amx ? "amx_bf16" : avx512 ? "avx512_bf16" : "none";
  }
  return "none";
}

void warn_if_bf16_is_slow(Precision precision, const torch::Device& device) {
  static std::atomic<bool> warned{false};
  if (precision != Precision::kBFloat16 || !device.is_cpu() || cpu_bf16_support() != "none") return;
  if (warned.exchange(true)) return;
  logger()->warn("bf16 was asked for, but this CPU has no bf16 instructions (neither avx512_bf16 nor amx_bf16): it "
                 "runs emulated and is likely slower than fp32");
}

AutocastGuard::AutocastGuard(const torch::Device& device, Precision precision) {
  if (precision != Precision::kBFloat16) return;
  cuda_ = device.is_cuda();
  check(device.is_cpu() || cuda_, "AutocastGuard: bf16 autocast runs on cpu or cuda, got ", device);
  was_enabled_ = enabled(cuda_);
  was_dtype_ = dtype(cuda_);
  set_enabled(cuda_, true);
  set_dtype(cuda_, c10::ScalarType::BFloat16);
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  // The outermost region drops the bf16 copies of the weights: an optimizer step after it
  // changes the fp32 weights, and a cached copy would be stale.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_enabled(cuda_, was_enabled_);
  set_dtype(cuda_, was_dtype_);
}

}  // namespace kdistill
