// The `kdistill` Python module. Each area of the library is bound in its own file (bind_*.cpp).
#include "bindings.h"

PYBIND11_MODULE(kdistill, m) {
  // torch must be initialised before any tensor crosses the boundary: torch.Tensor's Python type
  // and the torch._C bindings of torch::jit::Module are registered when torch is imported.
  py::module_::import("torch");
  m.doc() = "kdistill: knowledge distillation on LibTorch, with measurements.\n\n"
            "Losses take and return torch.Tensor (autograd flows to the student's logits); bench, "
            "train and cache_teacher take TorchScript models (torch.jit.script) or their files.";
  kdistill::python::bind_core(m);
  kdistill::python::bind_losses(m);
  kdistill::python::bind_data(m);
  kdistill::python::bind_teachers(m);
  kdistill::python::bind_bench(m);
  kdistill::python::bind_train(m);
}
