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
  /// The shape of one input, e.g. {1, 28, 28}. Empty: taken from the first Linear's
  /// in_features when the model starts with (Flatten and) a Linear; required for convolutions.
  TORCH_ARG(std::vector<int64_t>, input_shape);
  /// Normalisation the runtime applies to raw inputs: x' = (x - mean) / std (default: none).
  TORCH_ARG(double, mean) = 0.0;
  TORCH_ARG(double, std) = 1.0;
};

/// Writes `model` as an HDF5 file for the Eigen runtime (`kdistill::runtime::Model::load`),
/// atomically: a reader sees the old file or the complete new one.
///
/// The model must be a `torch::nn::Sequential` (nested Sequentials are flattened), from C++ or
/// TorchScript (`torch.jit.script` or `torch.jit.trace` of an `nn.Sequential`), of these layers:
/// Flatten (over every dimension but the batch), Linear, Conv2d (zero padding, dilation 1,
/// groups 1), MaxPool2d and AvgPool2d (padding 0, dilation 1, ceil_mode off), ReLU, GELU,
/// Tanh, Sigmoid, and BatchNorm1d/BatchNorm2d right after a Linear/Conv2d (folded into its
/// weights with the running statistics), Dropout and Identity (dropped). TorchScript layers are
/// told by their class (`torch.nn.modules...Conv2d`); a scripted module's hyperparameters are read
/// from its constants, a traced module's from the arguments of the one call in its forward
/// graph. The model's eval-mode forward on zeros of `input_shape` must give `[1, C]` logits,
/// with C the last layer's output width.
///
/// Throws `kdistill::Error` naming the layer and the problem, e.g.
/// `export_model: layer 3 (Softmax) is not supported; supported: ...`.
///
/// The file: root attributes `format` = "kdistill-runtime-1", `kdistill_version`, `arch`,
/// `input_shape` (int64[]), `num_classes` (int64), `mean` and `std` (float64); group `layers`
/// with groups "0", "1", ... each with a string attribute `type` and, per type, float32 datasets
/// `weight` and `bias` (Linear [out, in] and [out]; Conv2d [out, in, kh, kw] and [out]) and int64
/// attributes (Linear: in_features, out_features; Conv2d: in_channels, out_channels,
/// kernel_size[2], stride[2], padding[2]; MaxPool2d/AvgPool2d: kernel_size[2], stride[2],
/// padding[2] = 0; GELU: string approximate, "none" or "tanh").
///
/// Example:
/// ```
/// auto student = kdistill::Model::load_torchscript("student.pt");
/// kdistill::export_model(student, "student.h5", kdistill::ExportOptions().input_shape({1, 28, 28}));
/// ```
void export_model(const Model& model, const std::string& path, const ExportOptions& options = {});

}  // namespace kdistill
#pragma GCC visibility pop
