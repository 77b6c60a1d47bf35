#pragma once

#include <torch/types.h>

namespace kdistill::detail {

// An uninitialised CPU tensor whose memory the kernel may back with 2 MiB pages
// (madvise(MADV_HUGEPAGE), which takes effect where transparent huge pages are "always" or
// "madvise", Debian's default). For data sets, which are written once, in full, as they load:
// with 4 KiB pages the first write of Fashion-MNIST's 188 MB of float images costs 46,000 page
// faults, about 0.29 s on the virtual machines measured here (docs/performance.md), and 2 MiB
// pages take most of that away. Tensors under 4 MiB come from torch::empty.
torch::Tensor empty_on_huge_pages(at::IntArrayRef sizes, torch::ScalarType dtype);

}  // namespace kdistill::detail
