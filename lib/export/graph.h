#pragma once

// The TorchScript front end of export_model: reads a scripted or traced module's frozen, inlined
// forward graph, whatever Python class wrote it. Private to the library.

#include <cstdint>
#include <memory>
#include <vector>

#include "export/plan.h"

namespace torch::jit {
struct Module;
}

namespace kdistill::export_plan {

/// The runtime graph of `module`'s eval-mode forward, for inputs of per-sample `input_shape`
/// (empty: taken from the first linear layer when the model starts with one). Sets `output` to the
/// value holding the logits. Throws kdistill::Error naming the operation, the source line
/// TorchScript recorded for it and the supported operations.
std::unique_ptr<Graph> from_torchscript(const torch::jit::Module& module, const std::vector<int64_t>& input_shape,
                                        int64_t& output);

}  // namespace kdistill::export_plan
