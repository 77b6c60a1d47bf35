#pragma once

/// The serving runtime: runs a student written by `kdistill::export_model` with Eigen alone.
///
/// This header and its library (`kdistill::runtime`, Eigen + HDF5) do not use LibTorch: a service
/// links `kdistill::runtime` only. Errors are `kdistill::Error` (from the header-only
/// `kdistill/core/error.h`).

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kdistill/core/error.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::runtime {

namespace detail {
struct Network;  // the loaded layers (opaque)
}  // namespace detail

/// An exported student (the HDF5 file of `kdistill::export_model`), ready to predict.
///
/// Weights are immutable after `load`, and `predict` keeps its working memory in per-thread
/// buffers, so one `Model` may be shared by any number of threads calling `predict` at once.
/// Copies share the weights. Each call runs on the calling thread alone (Eigen is not threaded).
///
/// Example:
/// ```
/// auto model = kdistill::runtime::Model::load("student.h5");
/// std::vector<float> images(8 * model.input_size());      // raw inputs, e.g. pixels in [0, 1]
/// std::vector<float> logits(8 * model.num_classes());
/// model.predict(images.data(), 8, logits.data());          // normalisation is in the file
/// ```
class Model {
 public:
  /// Reads and checks an exported model: its `format` (`kdistill-runtime-2`, a graph of nodes, or
  /// the older `kdistill-runtime-1`, a chain of layers), every node's type, inputs, attributes
  /// and weights, and that the shapes fit from `input_shape` to `[num_classes]`, before it
  /// allocates anything for them. Then plans the activation buffers once: a buffer is reused as
  /// soon as the last reader of its value has run. Throws `kdistill::Error` naming the file, the
  /// node and the problem. Loads in several threads take turns.
  static Model load(const std::string& path);

  /// The shape of one input, e.g. {1, 28, 28}.
  const std::vector<int64_t>& input_shape() const;
  /// Floats per input: the product of `input_shape()`.
  int64_t input_size() const;
  /// Logits per input.
  int64_t num_classes() const;
  /// The normalisation applied to raw inputs before the first layer: x' = (x - mean) / std.
  double mean() const;
  double stddev() const;
  /// The number of nodes run (layers in a file of the first format). BatchNorm folded into a
  /// convolution and Dropout are gone.
  int64_t num_layers() const;

  /// Logits for `batch` inputs. `input` is row-major `[batch, input_size()]` raw inputs (the
  /// file's normalisation is applied here); `logits` receives row-major `[batch, num_classes()]`.
  /// After the first call on a thread with a given batch size, it allocates no buffers of its
  /// own. Throws `kdistill::Error` for a negative batch or null pointers.
  void predict(const float* input, int batch, float* logits) const;

  /// Convenience form: `input.size()` must be a multiple of `input_size()`; returns the logits.
  std::vector<float> predict(const std::vector<float>& input) const;

  /// A multi-line summary: file, format, input shape, normalisation, node and buffer counts, then
  /// one line per node with its output shape, and its inputs where it does not read the node
  /// before it (x is the input), e.g. "  0 Conv2d 1->8 k3x3 s1x1 p1x1 -> [8, 28, 28]" and
  /// "  11 Add -> [16, 14, 14] <- 9 10".
  std::string describe() const;

 private:
  explicit Model(std::shared_ptr<const detail::Network> net) : net_(std::move(net)) {}
  std::shared_ptr<const detail::Network> net_;
};

}  // namespace kdistill::runtime
#pragma GCC visibility pop
