// Tests for kdistill/core/system.h: device parsing, system_info() and set_threads().

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <torch/torch.h>

#include <climits>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/core/system.h"
#include "kdistill/version.h"
#include "support.h"

namespace {

using ::testing::HasSubstr;

std::string parse_error(const std::string& spec) {
  return kdistill::test::error_of([&] { kdistill::parse_device(spec); });
}

TEST(ParseDevice, CpuIsAccepted) {
  const auto d = kdistill::parse_device("cpu");
  EXPECT_TRUE(d.is_cpu());
  EXPECT_EQ(d, torch::Device(torch::kCPU));
}

TEST(ParseDevice, MalformedSpecsThrowNamingTheSpec) {
  for (const std::string spec : {"gpu", "cuda:x", "cudafoo", "CPU", "cuda:-1", "cuda:1x"}) {
    EXPECT_THROW(kdistill::parse_device(spec), kdistill::Error) << spec;
    EXPECT_THAT(parse_error(spec), HasSubstr("\"" + spec + "\"")) << parse_error(spec);
  }
  EXPECT_THROW(kdistill::parse_device(""), kdistill::Error);
  EXPECT_THAT(parse_error(""), HasSubstr("got \"\"")) << parse_error("");
}

TEST(ParseDevice, CudaWithoutDevicesThrows) {
  if (torch::cuda::device_count() != 0) GTEST_SKIP() << "CUDA devices are present";
  for (const std::string spec : {"cuda", "cuda:0", "cuda:7"}) {
    EXPECT_THROW(kdistill::parse_device(spec), kdistill::Error) << spec;
    EXPECT_THAT(parse_error(spec), HasSubstr(spec)) << parse_error(spec);
  }
}

TEST(ParseDevice, CudaIndexBeyondDeviceCountThrows) {
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (count == 0 || count > 7) GTEST_SKIP() << count << " CUDA devices";
  EXPECT_THROW(kdistill::parse_device("cuda:7"), kdistill::Error);
  EXPECT_THAT(parse_error("cuda:7"), HasSubstr("cuda:7"));
  const auto last = kdistill::parse_device("cuda:" + std::to_string(count - 1));
  EXPECT_TRUE(last.is_cuda());
  EXPECT_EQ(static_cast<int64_t>(last.index()), count - 1);
  EXPECT_TRUE(kdistill::parse_device("cuda").is_cuda());
}

TEST(SystemInfo, VersionsAndThreads) {
  const auto info = kdistill::system_info();
  EXPECT_EQ(info.kdistill_version, std::string(kdistill::kVersion));
  EXPECT_EQ(info.kdistill_version, std::to_string(KDISTILL_VERSION_MAJOR) + "." +
                                       std::to_string(KDISTILL_VERSION_MINOR) + "." +
                                       std::to_string(KDISTILL_VERSION_PATCH));
  EXPECT_FALSE(info.torch_version.empty());
  EXPECT_EQ(info.threads, torch::get_num_threads());
  EXPECT_EQ(info.cuda_available, torch::cuda::is_available());
  EXPECT_EQ(static_cast<int64_t>(info.cuda_devices.size()),
            info.cuda_available ? static_cast<int64_t>(torch::cuda::device_count()) : 0);
  const std::set<std::string> kinds = {"openblas", "reference", "mkl", "blis", "other", "none"};
  EXPECT_EQ(kinds.count(info.blas_kind), 1u) << info.blas_kind;
  EXPECT_EQ(info.blas_kind == "none", info.blas_library.empty()) << info.blas_kind << " " << info.blas_library;
}

// Independent check of the dl_iterate_phdr scan: the BLAS libraries the kernel reports as mapped
// into this process, with their real paths.
std::set<std::string> blas_paths_in_proc_maps() {
  std::set<std::string> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    if (path.find(" (deleted)") != std::string::npos) continue;
    const std::string base = path.substr(path.find_last_of('/') + 1);
    if (base.rfind("libblas.so", 0) == 0 || base.rfind("libopenblas", 0) == 0 || base.rfind("libmkl_rt", 0) == 0 ||
        base.rfind("libblis", 0) == 0) {
      char* real = ::realpath(path.c_str(), nullptr);
      out.insert(real ? std::string(real) : path);
      std::free(real);
    }
  }
  return out;
}

TEST(SystemInfo, BlasLibraryIsOneMappedIntoTheProcess) {
  const auto info = kdistill::system_info();  // runs a matmul first, so lazily loaded BLAS is mapped
  const auto mapped = blas_paths_in_proc_maps();
  if (mapped.empty()) {
    EXPECT_EQ(info.blas_library, "");
    EXPECT_EQ(info.blas_kind, "none");
    return;
  }
  std::string listed;
  for (const auto& p : mapped) listed += p + " ";
  EXPECT_EQ(mapped.count(info.blas_library), 1u) << info.blas_library << " not among mapped: " << listed;
  if (mapped.size() == 1) EXPECT_EQ(info.blas_library, *mapped.begin());
  // The reported path is already resolved: `readlink -f` leaves it unchanged.
  const auto r = kdistill::test::run("readlink -f '" + info.blas_library + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, info.blas_library + "\n");
}

TEST(SetThreads, SetsAndIgnoresNonPositive) {
  const int before = torch::get_num_threads();
  const int wanted = before == 1 ? 2 : 1;
  kdistill::set_threads(wanted);
  EXPECT_EQ(torch::get_num_threads(), wanted);
  kdistill::set_threads(0);
  EXPECT_EQ(torch::get_num_threads(), wanted);
  kdistill::set_threads(-3);
  EXPECT_EQ(torch::get_num_threads(), wanted);
  EXPECT_EQ(kdistill::system_info().threads, wanted);
  kdistill::set_threads(before);
  EXPECT_EQ(torch::get_num_threads(), before);
}

// Runs `kdistill_tests --child=malloc MODE` (see malloc_child): a fresh process.
kdistill::test::Output malloc_child_run(const std::string& mode) {
  return kdistill::test::run(kdistill::test::self_exe() + " --child=malloc " + mode);
}

TEST(TuneAllocator, ServesLargeBlocksFromTheHeap) {
  // Control: with glibc's initial 128 KiB threshold set again, a 30 MB block is a fresh mmap
  // (faulted in anew each time); after tune_allocator() it comes from the heap, which keeps it.
  const auto tuned = malloc_child_run("tuned");
  if (tuned.status == 3) GTEST_SKIP() << "mallopt is not glibc's here (a sanitizer build): skipped";
  const auto control = malloc_child_run("default");
  ASSERT_EQ(control.status, 0) << control.err;
  ASSERT_EQ(tuned.status, 0) << tuned.err;
  EXPECT_GE(std::stoull(control.out), uint64_t{30} << 20);
  EXPECT_EQ(std::stoull(tuned.out), 0u);
  kdistill::AllocatorOptions too_big;
  too_big.mmap_threshold = size_t{64} << 20;
  EXPECT_THAT(kdistill::test::error_of([&] { kdistill::tune_allocator(too_big); }), HasSubstr("at most 32 MiB"));
}

}  // namespace

namespace kdistill::test {

// The child for TuneAllocator: in a fresh process, prints how many bytes glibc mmaps for one
// 30 MB block, after tune_allocator() ("tuned") or with glibc's initial 128 KiB threshold set
// again ("default": LibTorch's start-up frees may already have moved the dynamic threshold).
int malloc_child(const std::vector<std::string>& args) {
  if (args.size() != 1) return 2;
  if (args[0] == "tuned" && !kdistill::tune_allocator()) return 3;  // e.g. ASan's mallopt
  if (args[0] == "default" && ::mallopt(M_MMAP_THRESHOLD, 128 * 1024) != 1) return 1;
  const size_t before = ::mallinfo2().hblkhd;
  void* volatile block = std::malloc(size_t{30} << 20);  // volatile: the compiler may not elide it
  const size_t after = ::mallinfo2().hblkhd;
  std::free(block);
  std::printf("%zu\n", after - before);
  return 0;
}

}  // namespace kdistill::test
