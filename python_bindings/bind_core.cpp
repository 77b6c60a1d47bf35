// kdistill/core and kdistill/version.h: versions, the exception type, system information.
#include "bindings.h"

#include <torch/version.h>

#include "kdistill/core/error.h"
#include "kdistill/core/system.h"
#include "kdistill/version.h"

namespace kdistill::python {

void bind_core(py::module_& m) {
  m.attr("__version__") = kVersion;
  m.attr("torch_version") = TORCH_VERSION;  // the LibTorch this module was built against

  // kdistill::Error (bad input, failed I/O) arrives as kdistill.Error, a RuntimeError, with the
  // library's message unchanged. Local: tried for this module's functions only.
  py::register_local_exception<Error>(m, "Error", PyExc_RuntimeError);
  // Errors raised by LibTorch inside the library get torch's own Python types and messages
  // (IndexError, ValueError, ... or RuntimeError), as if torch had raised them.
  py::register_local_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    try {
      std::rethrow_exception(p);
    } catch (const c10::Error&) {
      torch::translate_exception_to_python(p);
    }
  });

  m.def(
      "system_info",
      [] {
        const auto info = system_info();
        py::dict d;
        d["kdistill_version"] = info.kdistill_version;
        d["torch_version"] = info.torch_version;
        d["blas_library"] = info.blas_library;
        d["blas_kind"] = info.blas_kind;
        d["threads"] = info.threads;
        d["cpu_bf16"] = info.cpu_bf16;
        d["cuda_available"] = info.cuda_available;
        d["cuda_devices"] = info.cuda_devices;
        return d;
      },
      "What the process runs on, as a dict: kdistill_version, torch_version, blas_library, blas_kind "
      "(openblas, reference, mkl, other or none), threads, cpu_bf16 (amx_bf16, avx512_bf16 or none), cuda_available, "
      "cuda_devices.");
}

}  // namespace kdistill::python
