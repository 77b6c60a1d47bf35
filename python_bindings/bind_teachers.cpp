// kdistill/teachers: offline teacher logits (an HDF5 cache for `teacher: {cache: ...}` runs).
#include "bindings.h"

#include "kdistill/core/error.h"
#include "kdistill/core/system.h"
#include "kdistill/data/spec.h"
#include "kdistill/io/sha256.h"
#include "kdistill/teachers/cache.h"

namespace kdistill::python {

void bind_teachers(py::module_& m) {
  m.def(
      "cache_teacher",
      [](const py::object& teacher, const std::string& data_spec, const py::object& out, const std::string& split,
         int64_t batch_size, const std::string& device, const std::string& format, int64_t top_k, int64_t samples,
         double temperature, uint64_t seed) {
        check(format != "topk" || top_k >= 1, "cache_teacher: format=\"topk\" needs top_k >= 1");
        // A teacher given by its file is recorded by the file's hash; one in memory has no file.
        const std::string teacher_file = is_path(teacher) ? to_path(teacher) : "";
        ModelTeacher model_teacher(to_model(teacher, "cache_teacher: teacher", device));
        const auto out_path = to_path(out);
        CacheInfo info;
        {
          py::gil_scoped_release no_gil;
          auto dataset = data::load_spec(data_spec, split);
          const auto sha = teacher_file.empty() ? "" : io::sha256_file(teacher_file);
          info = cache_teacher(model_teacher, dataset, out_path,
                               CacheOptions()
                                   .format(format)
                                   .top_k(top_k)
                                   .samples(samples)
                                   .temperature(temperature)
                                   .seed(seed)
                                   .teacher_sha256(sha)
                                   .batch_size(batch_size));
        }
        py::dict d;
        d["path"] = out_path;
        d["samples"] = info.samples;
        d["classes"] = info.classes;
        d["teacher_sha256"] = info.teacher_sha256;
        d["data_sha256"] = info.data_sha256;
        d["kdistill_version"] = info.kdistill_version;
        d["from_probs"] = info.from_probs;
        d["format"] = info.format;
        d["k"] = info.k;
        d["draws"] = info.draws;
        d["temperature"] = info.temperature;
        d["bytes_per_row"] = info.bytes_per_row;
        return d;
      },
      py::arg("teacher"), py::arg("data"), py::arg("out"), py::kw_only(), py::arg("split") = "train",
      py::arg("batch_size") = 256, py::arg("device") = "cpu", py::arg("format") = "dense", py::arg("top_k") = 0,
      py::arg("samples") = 0, py::arg("temperature") = 1.0, py::arg("seed") = 0,
      R"doc(Runs a teacher once over a data set and writes its logits to an HDF5 file (dataset `logits`,
float32 [N, C], with attributes teacher_sha256, data_sha256, kdistill_version), for runs with
`teacher: {cache: FILE}`. The file appears atomically. format="topk" with top_k=K stores only the
K most probable classes per sample (float16 log-probabilities, int32 indices) and the tail mass;
format="sampled" with samples=S stores S draws per sample from the teacher at `temperature`
(seeded by `seed`): an unbiased estimate for kd, soft_ce and kl at that temperature.
Stream a large cache in a run with `teacher: {cache: FILE, stream: True}`.

teacher: a torch.jit.ScriptModule (copied: the caller's module is left as it was) or the path of a
TorchScript file (its SHA-256 is recorded). data: "idx:DIR", a directory, "hdf5:FILE" or
"hdf5:FILE:FEATURES:LABELS". device: "cpu", "cuda" or "cuda:N".
Returns a dict: path, samples, classes, teacher_sha256, data_sha256, kdistill_version, from_probs,
format, k, draws, temperature, bytes_per_row.

Example:
    kdistill.cache_teacher("teacher.pt", "hdf5:train.h5", "logits.h5"))doc");
}

}  // namespace kdistill::python
