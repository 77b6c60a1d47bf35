#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

namespace kdistill {

/// What the process runs on: versions, the BLAS actually loaded, threads and CUDA devices.
struct SystemInfo {
  std::string kdistill_version;  ///< e.g. "0.1.0"
  std::string torch_version;     ///< LibTorch's version, e.g. "1.13.1"
  std::string blas_library;      ///< resolved path of the BLAS library mapped into the process
  std::string blas_kind;         ///< "openblas", "reference", "mkl", "other" or "none"
  int threads = 1;               ///< `torch::get_num_threads()`
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

}  // namespace kdistill
