// kdistill/train: configured runs (the YAML schema of docs/cli.md, "The run configuration").
#include "bindings.h"

#include "kdistill/train/config.h"
#include "kdistill/train/run.h"

namespace kdistill::python {
namespace {

// The run's report.json as a dict, with the output directory added.
py::object to_python(const RunResult& result) {
  py::object report = from_json(result.report_json);
  report["output_dir"] = result.output_dir;
  return report;
}

}  // namespace

void bind_train(py::module_& m) {
  m.def(
      "train",
      [](const py::object& config) {
        RunConfig c;
        if (py::isinstance<py::dict>(config)) {
          // A dict is the same document as the YAML file: JSON is YAML. Relative paths are
          // resolved against the current directory; os.PathLike values become strings.
          auto os = py::module_::import("os");
          py::object fspath = os.attr("fspath");
          py::object text = py::module_::import("json").attr("dumps")(config, py::arg("default") = fspath);
          c = parse_config(text.cast<std::string>(), "<dict>", os.attr("getcwd")().cast<std::string>());
        } else if (is_path(config)) {
          c = load_config(to_path(config));
        } else {
          throw py::type_error("train: config: expected a dict or the path of a YAML file, got " +
                               std::string(Py_TYPE(config.ptr())->tp_name));
        }
        RunResult result;
        {
          py::gil_scoped_release no_gil;
          result = run_config(c);
        }
        return to_python(result);
      },
      py::arg("config"),
      R"doc(Runs a configured distillation and returns its report (report.json) as a dict, plus
"output_dir".

config: the path of a YAML file (relative paths in it are resolved against its directory) or a
dict with the same keys (relative paths resolved against the current directory):
    {"seed": 0, "threads": 2,
     "data": {"format": "hdf5", "train": "train.h5", "test": "test.h5"},   # or {"format": "idx", "path": DIR}
     "teacher": {"torchscript": "teacher.pt"},    # or {"cache": "logits.h5"}; none: from labels
     "student": {"torchscript": "student.pt"},    # untrained, from torch.jit.save(torch.jit.script(m))
     "loss": {"kind": "kd", "temperature": 4.0, "alpha": 0.9},   # or a list of weighted objectives:
     # "loss": [{"kind": "kd", "weight": 0.9, "temperature": 4}, {"kind": "ce", "weight": 0.1},
     #          {"kind": "hint", "weight": 1, "student": "layer2", "teacher": "layer3"}],
     "train": {"epochs": 10, "batch_size": 128, "lr": 0.05, "schedule": "cosine"},
     "output": "runs/exp1"}
The output directory receives student.pt (load it with torch.jit.load), metrics.jsonl,
manifest.json, report.json and checkpoints/; one that already holds a run is refused.
Bad keys or values raise kdistill.Error naming them ("<dict>: train.lr: expected a number, ...").
The call holds no GIL while training; Ctrl-C takes effect when it returns.

Example:
    report = kdistill.train("run.yaml")
    student = torch.jit.load(report["output_dir"] + "/student.pt"))doc");

  m.def(
      "resume",
      [](const py::object& output_dir) {
        const auto dir = to_path(output_dir);
        RunResult result;
        {
          py::gil_scoped_release no_gil;
          result = resume_run(dir);
        }
        return to_python(result);
      },
      py::arg("output_dir"),
      R"doc(Continues the run in output_dir from its last checkpoint, with the config.yaml stored there,
and returns its report like train(). A finished run is read back: nothing is trained or written.)doc");
}

}  // namespace kdistill::python
