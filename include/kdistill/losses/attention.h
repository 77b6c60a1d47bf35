#pragma once

#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// The spatial attention map of a conv feature `[B, C, H, W]` (Zagoruyko and Komodakis, ICLR
/// 2017), `[B, H * W]`:
///   a = vec( mean_c |f_c|^p ),  returned as a / ||a||_2
/// Throws `kdistill::Error` when `feature` is not 4-D or p < 1 (below 1, |f|^p has an infinite
/// slope at the zeros a ReLU leaves, and the gradient is NaN).
///
/// Example:
/// ```
/// auto a = kdistill::attention_map(features, 2.0);  // each row has unit L2 norm
/// ```
torch::Tensor attention_map(const torch::Tensor& feature, double p = 2.0);

/// Attention transfer between one student and one teacher feature, per sample `[B]`:
///   at_i = (1 / (H W)) * || a(f_s)_i - a(f_t)_i ||^2
/// When the spatial sizes differ, the larger feature is average-pooled to the smaller size first
/// (as mdistiller does); channel counts may differ. The teacher feature gets no gradient.
/// mdistiller weights the sum over layer pairs by 1000.
///
/// Example:
/// ```
/// auto loss = 1000 * kdistill::attention_transfer(fs, ft).mean();
/// ```
torch::Tensor attention_transfer(const torch::Tensor& student_feature, const torch::Tensor& teacher_feature,
                                 double p = 2.0);

}  // namespace kdistill
#pragma GCC visibility pop
