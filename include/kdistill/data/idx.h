#pragma once

#include <string>

#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill::data {

/// Reads an IDX file (the MNIST family's format), gzip-compressed or plain, into a tensor.
///
/// Only unsigned-byte IDX files (type code 0x08) are accepted; the result is a `uint8` tensor whose
/// shape is the file's dimensions, e.g. `[60000, 28, 28]` for images or `[60000]` for labels.
/// The magic number, the dimension count and the payload length are validated: a wrong magic
/// number, a truncated or corrupt gzip stream, a short payload or trailing bytes throw
/// `kdistill::Error` naming the file and what was expected.
///
/// Example:
/// ```
/// auto images = kdistill::data::read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
/// ```
torch::Tensor read_idx(const std::string& path);

/// Writes a `uint8` tensor as an IDX file (gzip-compressed when `path` ends in `.gz`).
/// Used to make test data and to export subsets in the format `read_idx` reads.
void write_idx(const std::string& path, const torch::Tensor& values);

}  // namespace kdistill::data
#pragma GCC visibility pop
