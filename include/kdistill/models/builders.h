#pragma once

#include <string>
#include <vector>

#include <torch/nn/modules/container/sequential.h>

#include "kdistill/models/model.h"

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// A multilayer perceptron: Flatten, then Linear + ReLU (+ Dropout when `dropout` > 0) for each
/// hidden width, then a Linear to `outputs` logits.
///
/// Example:
/// ```
/// auto teacher = kdistill::mlp(784, {1200, 1200}, 10, 0.2);  // 2,395,210 parameters
/// auto student = kdistill::mlp(784, {64}, 10);               // 50,890 parameters
/// ```
torch::nn::Sequential mlp(int64_t inputs, const std::vector<int64_t>& hidden, int64_t outputs, double dropout = 0.0);

/// A small CNN for `[B, C, H, W]` images: for each width, Conv 3x3 (padding 1) + BatchNorm + ReLU +
/// MaxPool 2; then Flatten and a Linear to `outputs` logits, with a hidden Linear + ReLU + Dropout
/// of `fc` units in between when `fc` > 0.
///
/// Example:
/// ```
/// auto student = kdistill::cnn({1, 28, 28}, {8, 16}, 10);            // 9,146 parameters
/// auto teacher = kdistill::cnn({1, 28, 28}, {32, 64}, 10, 256, 0.2); // 824,650 parameters
/// ```
torch::nn::Sequential cnn(const std::vector<int64_t>& sample_shape, const std::vector<int64_t>& widths, int64_t outputs,
                          int64_t fc = 0, double dropout = 0.0);

/// Builds a reference model from a spec string: "mlp:W1,W2,..." or "cnn:W1,W2,..." (e.g. "cnn:8,16"),
/// or "cnn" for the demo's CNN teacher (cnn:32,64 with a 256-unit hidden layer). `sample_shape` is the shape of one input
/// (e.g. {1, 28, 28}). Language models: "transformer:DIM,LAYERS,HEADS" (`transformer_lm`, with
/// `sample_shape` {L} as its context and `classes` as the vocabulary) and "gru:HIDDEN[,LAYERS]"
/// (`gru_lm`). Throws `kdistill::Error` naming the spec when it cannot be parsed.
Model build_model(const std::string& spec, const std::vector<int64_t>& sample_shape, int64_t classes,
                  double dropout = 0.0);

}  // namespace kdistill
#pragma GCC visibility pop
