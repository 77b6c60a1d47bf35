// kdistill/data: data sets as kdistill reads them (the same loaders and normalisation as runs use).
#include "bindings.h"

#include "kdistill/data/spec.h"

namespace kdistill::python {

void bind_data(py::module_& m) {
  m.def(
      "load_data",
      [](const std::string& spec, const std::string& split) {
        data::TensorDataset ds;
        {
          py::gil_scoped_release no_gil;
          ds = data::load_spec(spec, split);
        }
        py::dict d;
        d["features"] = ds.features();
        d["targets"] = ds.targets();
        d["num_classes"] = ds.num_classes();
        d["name"] = ds.name();
        return d;
      },
      py::arg("spec"), py::arg("split") = "train",
      R"doc(Loads a data set as kdistill does, as a dict: features (float32 tensor [N, ...]), targets
(int64 [N], -1 = unlabelled), num_classes, name.

spec: "idx:DIR" or a plain directory (an MNIST-family IDX directory; both splits normalised by the
training set's mean and standard deviation), or "hdf5:FILE" / "hdf5:FILE:FEATURES:LABELS" (the
split is then ignored). split: "train" or "test".

Example:
    test = kdistill.load_data("idx:/usr/share/datasets/fashion-mnist", "test"))doc");
}

}  // namespace kdistill::python
