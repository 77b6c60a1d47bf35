#include "kdistill/core/system.h"

#include <link.h>
#include <malloc.h>

#include <climits>
#include <cstdlib>
#include <string>

#include <torch/cuda.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "kdistill/core/error.h"
#include "kdistill/core/precision.h"
#include "kdistill/version.h"

namespace kdistill {
namespace {

// Walks the shared objects mapped into this process and returns the first that provides BLAS.
// This is the library actually in use, not the one the build linked against.
std::string loaded_blas() {
  std::string found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        std::string name = info->dlpi_name ? info->dlpi_name : "";
        auto slash = name.find_last_of('/');
        std::string base = slash == std::string::npos ? name : name.substr(slash + 1);
        if (base.rfind("libblas.so", 0) == 0 || base.rfind("libopenblas", 0) == 0 ||
            base.rfind("libmkl_rt", 0) == 0 || base.rfind("libblis", 0) == 0) {
          char* real = realpath(name.c_str(), nullptr);
          *static_cast<std::string*>(out) = real ? real : name;
          std::free(real);
          return 1;
        }
        return 0;
      },
      &found);
  return found;
}

std::string blas_kind(const std::string& path) {
  if (path.empty()) return "none";
  if (path.find("openblas") != std::string::npos) return "openblas";
  if (path.find("mkl") != std::string::npos) return "mkl";
  if (path.find("blis") != std::string::npos) return "blis";
  if (path.find("/blas/") != std::string::npos) return "reference";
  return "other";
}

}  // namespace

SystemInfo system_info() {
  SystemInfo info;
  info.kdistill_version = kVersion;
  info.torch_version = TORCH_VERSION;
  // A tiny matmul makes sure libtorch has called into BLAS, so that lazily loaded BLAS shows up.
  (void)torch::mm(torch::ones({2, 2}), torch::ones({2, 2}));
  info.blas_library = loaded_blas();
  info.blas_kind = blas_kind(info.blas_library);
  info.threads = torch::get_num_threads();
  info.cpu_bf16 = cpu_bf16_support();
  info.cuda_available = torch::cuda::is_available();
  if (info.cuda_available) {
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i) {
      info.cuda_devices.push_back("cuda:" + std::to_string(i));
    }
  }
  return info;
}

torch::Device parse_device(const std::string& spec) {
  if (spec == "cpu") return torch::Device(torch::kCPU);
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    int64_t index = 0;
    if (spec.size() >= 5) {
      const std::string digits = spec.substr(5);
      check(!digits.empty() && digits.size() <= 4 && digits.find_first_not_of("0123456789") == std::string::npos,
            "device: expected cpu, cuda or cuda:N, got \"", spec, "\"");
      index = std::stoll(digits);
    }
    const auto count = static_cast<int64_t>(torch::cuda::device_count());
    check(count > 0, "device: ", spec, " requested but no CUDA device is available (LibTorch ",
          TORCH_VERSION, (torch::cuda::is_available() ? "" : ", built without CUDA or no driver"), ")");
    check(index < count, "device: ", spec, " requested but ", count, " CUDA device(s) are available");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  fail("device: expected cpu, cuda or cuda:N, got \"", spec, "\"");
}

void set_threads(int n) {
  if (n > 0) torch::set_num_threads(n);
}

bool tune_allocator(const AllocatorOptions& options) {
#if defined(__GLIBC__)
  // Setting M_MMAP_THRESHOLD also switches off glibc's dynamic threshold, which otherwise starts
  // at 128 KiB and moves only as mmapped blocks are freed, per process, not per arena.
  check(options.mmap_threshold <= (size_t{32} << 20), "tune_allocator: mmap_threshold must be at most 32 MiB (glibc's "
        "limit on 64-bit), got ", options.mmap_threshold);
  check(options.trim_threshold <= static_cast<size_t>(INT_MAX), "tune_allocator: trim_threshold must fit an int, got ",
        options.trim_threshold);
  const bool ok = ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(options.mmap_threshold)) == 1 &&
                  ::mallopt(M_TRIM_THRESHOLD, static_cast<int>(options.trim_threshold)) == 1;
  return ok;
#else
  (void)options;
  return false;
#endif
}

}  // namespace kdistill
