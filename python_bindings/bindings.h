#pragma once

// The `kdistill` Python module: one file per area of the library, each adding its functions to
// the module. Bindings convert arguments and results and call the library; they hold no logic.

// <torch/extension.h> brings pybind11 with LibTorch's type casters (torch.Tensor <-> torch::Tensor)
// and torch::jit's Python helpers: the recipe verified in NOTES.md ("Python bindings").
#include <torch/extension.h>
#include <torch/csrc/jit/python/module_python.h>

#include <string>

#include "kdistill/models/model.h"

namespace kdistill::python {

namespace py = pybind11;

/// `__version__`, `torch_version`, `Error` and `system_info`.
void bind_core(py::module_& m);
/// `kd_loss`, `kd_soft_loss`, `soft_target_cross_entropy`, `logit_mse`, `masked_cross_entropy`.
void bind_losses(py::module_& m);
/// `load_data`.
void bind_data(py::module_& m);
/// `cache_teacher`.
void bind_teachers(py::module_& m);
/// `bench`.
void bind_bench(py::module_& m);
/// `train`, `resume`.
void bind_train(py::module_& m);

/// A `Model` from a `torch.jit.ScriptModule` (deep-copied, so that the caller's module keeps its
/// device, mode and `requires_grad` flags whatever kdistill does with it) or from a path to a
/// TorchScript file (`str` or `os.PathLike`), on `device`. `who` names the argument in errors.
/// Call with the GIL held.
Model to_model(const py::handle& obj, const std::string& who, const std::string& device = "cpu");

/// Whether `obj` is a path (`str` or `os.PathLike`); `to_path` gives it as a string.
bool is_path(const py::handle& obj);
std::string to_path(const py::handle& obj);

/// JSON text as Python objects (`json.loads`).
py::object from_json(const std::string& text);

}  // namespace kdistill::python
