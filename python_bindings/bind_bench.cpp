// kdistill/bench: teacher against student, as the report JSON of docs/cli.md ("Reports").
#include "bindings.h"

#include <optional>

#include "kdistill/bench/compare.h"
#include "kdistill/bench/report.h"
#include "kdistill/core/system.h"
#include "kdistill/data/spec.h"

namespace kdistill::python {

void bind_bench(py::module_& m) {
  const bench::CompareOptions defaults;
  const bench::LatencyOptions latency;
  m.def(
      "bench",
      [](const py::object& teacher, const py::object& student, const std::vector<int64_t>& input_shape,
         const std::vector<int64_t>& batch_sizes, const std::string& device, int threads, double min_seconds,
         int64_t iters, double warmup_seconds, double max_seconds, bool torch_runtime, bool eigen,
         const std::optional<std::string>& data_spec) {
        auto t = to_model(teacher, "bench: teacher", device);
        auto s = to_model(student, "bench: student", device);
        auto o = bench::CompareOptions()
                     .input_shape(input_shape)
                     .batch_sizes(batch_sizes)
                     .device(parse_device(device))
                     .latency(bench::LatencyOptions()
                                  .threads(threads)
                                  .min_seconds(min_seconds)
                                  .min_iters(iters)
                                  .warmup_seconds(warmup_seconds)
                                  .max_seconds(max_seconds))
                     .libtorch(torch_runtime)
                     .eigen(eigen);
        std::string json;
        {
          py::gil_scoped_release no_gil;
          data::TensorDataset ds;
          if (data_spec) ds = data::load_spec(*data_spec, "test");
          json = bench::to_json(bench::compare(t, s, o, data_spec ? &ds : nullptr));
        }
        return from_json(json);
      },
      py::arg("teacher"), py::arg("student"), py::kw_only(), py::arg("input_shape") = std::vector<int64_t>{1, 28, 28},
      py::arg("batch_sizes") = defaults.batch_sizes(), py::arg("device") = defaults.device().str(),
      py::arg("threads") = latency.threads(), py::arg("min_seconds") = latency.min_seconds(),
      py::arg("iters") = latency.min_iters(), py::arg("warmup_seconds") = latency.warmup_seconds(),
      py::arg("max_seconds") = latency.max_seconds(), py::arg("torch") = defaults.libtorch(),
      py::arg("eigen") = defaults.eigen(), py::arg("data") = py::none(),
      R"doc(Latency (and, with data, accuracy and agreement) of a teacher and a student side by side.

teacher, student: torch.jit.ScriptModule (copied: the caller's modules are left as they were) or
paths of TorchScript files. input_shape: one sample's shape. batch_sizes: the batch sizes to time.
device: "cpu", "cuda" or "cuda:N". threads: intra-op threads while timing (0: leave as is).
min_seconds / iters: time each model and batch size for at least this long and at least this many
calls at batch 1 (iters/B, at least 20, at batch B); warmup_seconds and max_seconds bound the
warm-up and the timing. torch: time the LibTorch forward passes. eigen: also time the student
exported to kdistill's Eigen runtime (CPU only; entry "student_eigen"). data: a data spec
("idx:DIR", "hdf5:FILE", ...) whose test split gives accuracy and agreement.

Returns the report as a dict (docs/cli.md, "Reports"): report["models"]["student"]["latency_ms"]["1"]["p50"].

Example:
    report = kdistill.bench(torch.jit.script(teacher), torch.jit.script(student),
                            input_shape=[1, 28, 28], batch_sizes=[1, 256]))doc");
}

}  // namespace kdistill::python
