#include "core/huge_pages.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill::detail {

torch::Tensor empty_on_huge_pages(at::IntArrayRef sizes, torch::ScalarType dtype) {
  constexpr size_t kHuge = size_t{2} << 20;
  const auto bytes = static_cast<size_t>(c10::multiply_integers(sizes)) * c10::elementSize(dtype);
  if (bytes < 2 * kHuge) return torch::empty(sizes, torch::TensorOptions().dtype(dtype));
  // mmap returns page-aligned memory; ask for one huge page more and start at the first 2 MiB
  // boundary, so the whole tensor can sit on huge pages.
  const size_t length = bytes + kHuge;
  void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  check(base != MAP_FAILED, "cannot allocate ", bytes, " bytes: ", std::strerror(errno));
  const auto start = (reinterpret_cast<uintptr_t>(base) + kHuge - 1) & ~(kHuge - 1);
  void* data = reinterpret_cast<void*>(start);
#ifdef MADV_HUGEPAGE
  ::madvise(data, bytes, MADV_HUGEPAGE);  // advice only: without huge pages this is plain memory
#endif
  return torch::from_blob(
      data, sizes, [base, length](void*) { ::munmap(base, length); }, torch::TensorOptions().dtype(dtype));
}

}  // namespace kdistill::detail
