// runtime_alloc_check MODEL.h5 BATCH...: proves that runtime::Model::predict allocates nothing
// per call after warm-up. This program replaces malloc and its relatives (forwarding to glibc's
// own) so that every heap allocation in the process is counted, including Eigen's and the C++
// library's. It first checks that the counter sees an allocation it makes itself, then warms up
// one call per batch size, then counts the allocations of 20 more rounds over the batch sizes.
// Prints "allocations after warm-up: N" and exits 0 when N is 0, 1 otherwise (2 on usage errors).
// Links kdistill::runtime only, as a serving program does.

#include <errno.h>
#include <stddef.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kdistill/runtime/runtime.h"

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* ptr, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
}

namespace {
std::atomic<bool> counting{false};
std::atomic<long> allocations{0};
void count() {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" {
void* malloc(size_t size) {
  count();
  return __libc_malloc(size);
}
void* calloc(size_t n, size_t size) {
  count();
  return __libc_calloc(n, size);
}
void* realloc(void* ptr, size_t size) {
  count();
  return __libc_realloc(ptr, size);
}
void* memalign(size_t alignment, size_t size) {
  count();
  return __libc_memalign(alignment, size);
}
void* aligned_alloc(size_t alignment, size_t size) {
  count();
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** out, size_t alignment, size_t size) {
  count();
  void* p = __libc_memalign(alignment, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: runtime_alloc_check MODEL.h5 BATCH...\n");
    return 2;
  }
  // The counter must see what it exists to see.
  counting = true;
  auto* probe = new std::vector<float>(1000);
  counting = false;
  delete probe;
  if (allocations.load() < 2) {
    std::fprintf(stderr, "runtime_alloc_check: the allocation counter saw %ld of 2 allocations\n", allocations.load());
    return 1;
  }
  allocations = 0;

  const auto model = kdistill::runtime::Model::load(argv[1]);
  std::vector<int> batches;
  int largest = 0;
  for (int i = 2; i < argc; ++i) {
    batches.push_back(std::atoi(argv[i]));
    largest = std::max(largest, batches.back());
  }
  std::vector<float> input(static_cast<size_t>(largest * model.input_size()), 0.25f);
  std::vector<float> logits(static_cast<size_t>(largest * model.num_classes()));
  for (int b : batches) model.predict(input.data(), b, logits.data());  // warm-up
  counting = true;
  for (int round = 0; round < 20; ++round) {
    for (int b : batches) model.predict(input.data(), b, logits.data());
  }
  counting = false;
  std::printf("allocations after warm-up: %ld\n", allocations.load());
  return allocations.load() == 0 ? 0 : 1;
}
