#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "kdistill/models/model.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// Options for `export_model`.
///
/// Example:
/// ```
/// // the runtime computes (x - mean) / std before the first layer
/// auto opts = kdistill::ExportOptions().input_shape({1, 28, 28}).mean(0.2860).std(0.3530);
/// ```
struct ExportOptions {
  /// The shape of one input, e.g. {1, 28, 28}. Empty: taken from the first linear layer's
  /// in_features when the model starts with one (after any flatten, reshape or dropout);
  /// required for convolutions.
  TORCH_ARG(std::vector<int64_t>, input_shape);
  /// Normalisation the runtime applies to raw inputs: x' = (x - mean) / std (default: none).
  TORCH_ARG(double, mean) = 0.0;
  TORCH_ARG(double, std) = 1.0;
};

/// Writes `model` as an HDF5 file for the Eigen runtime (`kdistill::runtime::Model::load`),
/// atomically: a reader sees the old file or the complete new one.
///
/// **TorchScript models** (`torch.jit.script` or `torch.jit.trace`, of any Python class) are
/// exported from their graph: a copy is put in eval mode, frozen (parameters become constants)
/// and inlined, and its forward graph is read operation by operation. Supported: `aten::linear`,
/// `matmul`, `mm` and `addmm` with constant weights; `conv2d` and `_convolution` (grouped and
/// depthwise, any stride, zero padding including 'same', dilation); `batch_norm` in eval mode,
/// folded into the convolution or linear layer right before it when nothing else reads that
/// layer's output, and an affine node elsewhere;
/// `relu`, `relu6`, `hardtanh`, `gelu` (exact or tanh), `silu`, `hardswish`, `hardsigmoid`,
/// `tanh`, `sigmoid`; `max_pool2d` and `avg_pool2d` (padding at most half the kernel, no
/// ceil_mode or dilation); `adaptive_avg_pool2d` to 1x1 and `mean` over H and W; `flatten`, and
/// `reshape`/`view` that keep the batch first (`x.view(x.size(0), -1)`); `add` and `mul` of two
/// activations of equal shape, or one per channel of the other (residuals, squeeze-and-excitation);
/// `cat` on channels; `dropout`, `contiguous` and `detach` (removed). In-place forms are read as
/// their functional forms when nothing reads their input afterwards. Sizes computed from the
/// input's shape and branches on them (`if x.dim() != 4`) are evaluated at export time. Anything
/// else throws `kdistill::Error` naming the operation, the source line TorchScript recorded and
/// the supported list, e.g. `export_model: aten::softmax at model.py:12 (`return
/// torch.softmax(x, 1)`) is not supported; supported: ...`.
///
/// **C++ models** must be a `torch::nn::Sequential` (nested Sequentials are flattened) of
/// Flatten, Linear, Conv2d (zero padding mode), BatchNorm1d/2d, MaxPool2d, AvgPool2d,
/// AdaptiveAvgPool2d(1), ReLU, ReLU6, GELU, SiLU, Tanh, Sigmoid, Dropout and Identity, under the
/// same limits. Errors name the layer: `export_model: layer 3 (Softmax) is not supported; ...`.
///
/// The model's eval-mode forward on zeros of `input_shape` must give `[1, C]` logits, with C the
/// exported graph's output width.
///
/// The file (format `kdistill-runtime-2`): root attributes `format`, `kdistill_version`, `arch`,
/// `input_shape` (int64[]), `num_classes` (int64), `mean` and `std` (float64); group `nodes` with
/// groups "0", "1", ... in an order where every node comes after its inputs. Values are numbered:
/// 0 is the normalised input, k + 1 the output of node k; the last node gives the logits. Each
/// node has a string attribute `type`, an int64 attribute `inputs` (value numbers) and, per type:
/// - Linear: in_features, out_features; float32 datasets `weight` [out, in] and `bias` [out];
/// - Conv2d: in_channels, out_channels, groups, kernel_size[2], stride[2], padding[2],
///   dilation[2]; `weight` [out, in / groups, kh, kw] and `bias` [out];
/// - Affine (y = x * weight[c] + bias[c] along the first per-sample dimension): `weight`, `bias` [C];
/// - MaxPool2d and AvgPool2d: kernel_size[2], stride[2], padding[2]; AvgPool2d also
///   count_include_pad (0 or 1);
/// - GlobalAvgPool2d: [C, H, W] to [C, 1, 1]; Flatten: to one dimension; Reshape: shape
///   (int64[], per sample);
/// - ReLU, SiLU, Hardswish, Hardsigmoid, Tanh, Sigmoid; GELU: string approximate ("none" or
///   "tanh"); Hardtanh: float64 min_val and max_val (ReLU6 is Hardtanh [0, 6]);
/// - Add and Mul (two inputs), Concat (on the first per-sample dimension, any number).
///
/// The runtime still reads files of the first format, `kdistill-runtime-1` (a group `layers` of
/// Flatten, Linear, Conv2d, pooling and activation layers, each reading the one before).
///
/// Example:
/// ```
/// auto student = kdistill::Model::load_torchscript("resnet_student.pt");  // any scripted class
/// kdistill::export_model(student, "student.h5", kdistill::ExportOptions().input_shape({1, 28, 28}));
/// ```
void export_model(const Model& model, const std::string& path, const ExportOptions& options = {});

}  // namespace kdistill
#pragma GCC visibility pop
