#pragma once

#include <string>

#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// The numeric precision a model computes in.
enum class Precision {
  kFloat32,   ///< "fp32": everything in float32
  kBFloat16,  ///< "bf16": matrix products and convolutions in bfloat16 (AVX512-BF16/AMX on CPUs, tensor cores on GPUs)
};

/// "fp32" or "bf16". Throws `kdistill::Error` naming `who` for anything else; "fp16" is refused
/// with the reason: it needs dynamic loss scaling, which LibTorch's C++ API does not provide.
///
/// Example:
/// ```
/// auto p = kdistill::parse_precision("bf16", "--precision");
/// ```
Precision parse_precision(const std::string& text, const std::string& who = "precision");

/// "fp32" or "bf16".
const char* to_string(Precision precision);

/// The CPU's bfloat16 instructions, from /proc/cpuinfo: "amx_bf16" (AMX tiles, with or without
/// AVX512-BF16), "avx512_bf16", or "none" (bf16 then runs emulated, often slower than fp32).
std::string cpu_bf16_support();

/// Logs one warning per process when bf16 is asked for on a CPU without bf16 instructions: it
/// works, but slowly. Does nothing for fp32, for CUDA devices, or on a CPU with bf16 support.
void warn_if_bf16_is_slow(Precision precision, const torch::Device& device);

/// Mixed precision for the calling thread while alive: LibTorch's autocast to bfloat16 on
/// `device`'s type (CPU or CUDA). Matrix products and convolutions then run in bf16 on fp32
/// parameters (cast once per region and cached); softmax-type operations stay in fp32. Does
/// nothing for `Precision::kFloat32`. The destructor ends the region and clears autocast's weight
/// cache, so weights updated after the region are never read stale. Nests.
///
/// Example:
/// ```
/// {
///   kdistill::AutocastGuard bf16(torch::kCPU, kdistill::Precision::kBFloat16);
///   logits = model.forward(x);  // bf16 logits: cast to float before any softmax
/// }
/// ```
class AutocastGuard {
 public:
  AutocastGuard(const torch::Device& device, Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

}  // namespace kdistill
#pragma GCC visibility pop
