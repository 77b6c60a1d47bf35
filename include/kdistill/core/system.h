#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// What the process runs on: versions, the BLAS actually loaded, threads and CUDA devices.
struct SystemInfo {
  std::string kdistill_version;  ///< e.g. "0.1.0"
  std::string torch_version;     ///< LibTorch's version, e.g. "1.13.1"
  std::string blas_library;      ///< resolved path of the BLAS library mapped into the process
  std::string blas_kind;         ///< "openblas", "reference", "mkl", "other" or "none"
  int threads = 1;               ///< `torch::get_num_threads()`
  std::string cpu_bf16;          ///< the CPU's bf16 instructions: "amx_bf16", "avx512_bf16" or "none"
  bool cuda_available = false;   ///< whether LibTorch sees a usable CUDA device
  std::vector<std::string> cuda_devices;  ///< one name per CUDA device
};

/// Inspects the running process: which BLAS libtorch loaded, thread count, CUDA devices.
///
/// Example:
/// ```
/// auto info = kdistill::system_info();
/// if (info.blas_kind == "reference") { /* warn: dense layers will be ~40x slower */ }
/// ```
SystemInfo system_info();

/// Parses a device string: "cpu", "cuda" or "cuda:N".
///
/// Throws `kdistill::Error` for anything else, and for a CUDA device that is not present
/// (`device: cuda:7 requested but 1 CUDA device(s) are available`).
torch::Device parse_device(const std::string& spec);

/// Sets LibTorch's intra-op thread count (and OpenMP's); `n <= 0` leaves it unchanged.
void set_threads(int n);

/// What `tune_allocator` sets: glibc malloc's mmap and trim thresholds, in bytes.
struct AllocatorOptions {
  /// Blocks below this come from the heap, not fresh mmaps. At most 32 MiB (glibc's limit).
  size_t mmap_threshold = size_t{32} << 20;
  /// Free memory kept at the top of the heap before it is trimmed. At most INT_MAX.
  size_t trim_threshold = size_t{256} << 20;
};

/// Makes glibc malloc keep freed memory for reuse instead of handing it back to the kernel after
/// each training step. Process-wide: call it once, early in `main` (the `kdistill` command and the
/// benchmarks do; the library never calls it on its own), before other threads allocate much.
/// Returns false where the C library is not glibc (nothing is changed) or glibc's `mallopt`
/// refused a setting (then the mmap threshold may already be set); under a sanitizer, whose
/// allocator replaces glibc's, it returns false. With jemalloc or tcmalloc preloaded it returns
/// true but changes nothing that allocator uses. Throws `kdistill::Error` for options outside
/// the ranges above.
///
/// Why: a training step allocates and frees the same activation and gradient buffers (400 KB for
/// an MLP at batch 128) every time. glibc's defaults serve them from fresh mmaps or trim them off
/// the heap, so every step pays page faults again; with 2 threads, measured on the 2-core
/// reference machine, that was 70-120 faults per step and MLP-64 training at 76-90k samples/s
/// instead of ~215k. The cost: up to `trim_threshold` of freed memory stays with the process.
///
/// Example:
/// ```
/// int main() {
///   kdistill::tune_allocator();
///   ...
/// }
/// ```
bool tune_allocator(const AllocatorOptions& options = {});

}  // namespace kdistill
#pragma GCC visibility pop
