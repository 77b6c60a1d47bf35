#pragma once

// The runtime graph as export_model builds it: the Eigen runtime's nodes, each checked against
// the shapes of its inputs as it is added, and then written in the runtime's file format. Shared
// by the two front ends: C++ Sequentials (export.cpp) and TorchScript graphs (graph.cpp).
// Private to the library.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

namespace H5 {
class H5File;
}

namespace kdistill {
struct ExportOptions;
}

namespace kdistill::export_plan {

/// A convolution's parameters (weight [out, in / groups, kh, kw], bias [out] or undefined).
struct Conv {
  torch::Tensor weight, bias;
  std::vector<int64_t> stride{1, 1}, padding{0, 0}, dilation{1, 1};
  int64_t groups = 1;
};

/// An eval-mode BatchNorm: y = (x - mean) / sqrt(var + eps) * weight + bias, per channel.
struct BatchNorm {
  torch::Tensor mean, var, weight, bias;  // weight and bias may be undefined (affine=False)
  double eps = 1e-5;
};

/// A pooling window.
struct Pool {
  std::vector<int64_t> kernel, stride, padding{0, 0}, dilation{1, 1};
  bool ceil_mode = false;
  bool count_include_pad = true;
  bool divisor_override = false;
};

/// One node of the file: its type, the values it reads and its attributes.
struct Node {
  // Implicit, so that {"ReLU"} or {"Add", {a, b}} makes one.
  Node(std::string type_ = {}, std::vector<int64_t> inputs_ = {})
      : type(std::move(type_)), inputs(std::move(inputs_)) {}

  std::string type;
  std::vector<int64_t> inputs;
  torch::Tensor weight, bias;  // float32, CPU, contiguous; undefined where the node has none
  std::vector<std::pair<std::string, int64_t>> ints;
  std::vector<std::pair<std::string, std::vector<int64_t>>> arrays;
  std::vector<std::pair<std::string, double>> doubles;
  std::vector<std::pair<std::string, std::string>> strings;
};

/// The graph being built. Values are numbered as in the file: 0 is the model's input, k + 1 the
/// output of node k. Shapes are per sample (without the batch). Every method checks its inputs
/// and throws kdistill::Error starting with `who` ("export_model: layer 3 (Conv2d)").
class Graph {
 public:
  explicit Graph(std::vector<int64_t> input_shape);

  const std::vector<int64_t>& input_shape() const { return shapes_.front(); }
  const std::vector<int64_t>& shape(int64_t value) const { return shapes_.at(static_cast<size_t>(value)); }
  int64_t num_nodes() const { return static_cast<int64_t>(nodes_.size()); }

  int64_t linear(int64_t x, const torch::Tensor& weight, const torch::Tensor& bias, const std::string& who);
  int64_t conv(int64_t x, const Conv& conv, const std::string& who);
  /// Folded into the Linear or Conv2d that gives `x` when `fold` (nothing else reads `x`) and it
  /// is one; an Affine node otherwise.
  int64_t batch_norm(int64_t x, const BatchNorm& bn, bool fold, const std::string& who);
  /// "MaxPool2d" or "AvgPool2d".
  int64_t pool(const std::string& type, int64_t x, const Pool& pool, const std::string& who);
  int64_t global_avg_pool(int64_t x, const std::string& who);
  /// Flattens dimensions start_dim..end_dim of the batched tensor (negative: from the end).
  int64_t flatten(int64_t x, int64_t start_dim, int64_t end_dim, const std::string& who);
  /// To a per-sample `shape`, which may hold one -1.
  int64_t reshape(int64_t x, std::vector<int64_t> shape, const std::string& who);
  /// An elementwise activation ("ReLU", "GELU", ...) with its attributes in `node`.
  int64_t unary(int64_t x, Node node);
  /// "Add" or "Mul": equal shapes, or one value per channel of the other.
  int64_t binary(const std::string& type, int64_t a, int64_t b, const std::string& who);
  /// Concatenation on channels.
  int64_t concat(const std::vector<int64_t>& xs, const std::string& who);

  /// Checks that `output` is the last node's [num_classes] logits; returns num_classes.
  int64_t finish(int64_t output) const;

  /// Writes the file (the layout is in kdistill/export/export.h).
  void write(H5::H5File& file, const std::string& arch, const ExportOptions& options) const;

 private:
  int64_t add(Node node, std::vector<int64_t> shape);
  void check_value(int64_t x, const std::string& who) const;

  std::vector<std::vector<int64_t>> shapes_;  // per value
  std::vector<Node> nodes_;
};

/// padding='same' for stride 1: the padding on each side, or an error naming `who` when the
/// kernel cannot be padded evenly.
std::vector<int64_t> same_padding(const std::vector<int64_t>& kernel, const std::vector<int64_t>& dilation,
                                  const std::string& who);

}  // namespace kdistill::export_plan
