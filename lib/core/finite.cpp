#include "core/finite.h"

#include <cmath>

#include <torch/torch.h>

namespace kdistill::detail {

int64_t first_nonfinite_row(const torch::Tensor& rows) {
  if (!rows.defined() || rows.numel() == 0 || !rows.is_floating_point()) return -1;
  if (std::isfinite(rows.sum().item<double>())) return -1;
  auto finite = torch::isfinite(rows);
  auto bad = rows.dim() >= 2 ? ~finite.flatten(1).all(1) : ~finite;
  if (!bad.any().item<bool>()) return -1;
  return bad.nonzero()[0][0].item<int64_t>();
}

}  // namespace kdistill::detail
