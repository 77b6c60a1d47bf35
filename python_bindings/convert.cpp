// Conversions shared by the bindings: Python models and paths in, JSON out.
#include "bindings.h"

#include "kdistill/core/system.h"

namespace kdistill::python {

bool is_path(const py::handle& obj) {
  return py::isinstance<py::str>(obj) || py::hasattr(obj, "__fspath__");
}

std::string to_path(const py::handle& obj) {
  return py::module_::import("os").attr("fspath")(obj).cast<std::string>();
}

Model to_model(const py::handle& obj, const std::string& who, const std::string& device) {
  // torch.jit.ScriptModule (scripted or traced) wraps a C++ torch::jit::Module as `._c`.
  if (auto module = torch::jit::as_module(obj)) {
    std::string arch = "torchscript";
    if (py::hasattr(obj, "original_name")) {
      auto name = py::str(obj.attr("original_name")).cast<std::string>();
      if (!name.empty()) arch += ":" + name;
    }
    Model model(module->deepcopy(), arch);
    model.to(parse_device(device));
    return model;
  }
  if (is_path(obj)) return Model::load_torchscript(to_path(obj), parse_device(device));
  throw py::type_error(who + ": expected a torch.jit.ScriptModule (torch.jit.script(model)) or the path of a "
                       "TorchScript file, got " + std::string(Py_TYPE(obj.ptr())->tp_name));
}

py::object from_json(const std::string& text) { return py::module_::import("json").attr("loads")(text); }

}  // namespace kdistill::python
