// `kdistill export`: writes a trained TorchScript student as an HDF5 file for the Eigen runtime
// (`kdistill::runtime`), then loads it back with that runtime and prints what it holds.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "kdistill/kdistill.h"
#include "kdistill/export/export.h"
#include "kdistill/runtime/runtime.h"

namespace kdistill::cli {
namespace {

struct ExportArgs {
  std::string model;
  std::string out;
  std::vector<int64_t> input_shape{1, 28, 28};
  double mean = 0.0;
  double std = 1.0;
};

int run_export(const ExportArgs& a) {
  auto model = Model::load_torchscript(a.model);
  export_model(model, a.out, ExportOptions().input_shape(a.input_shape).mean(a.mean).std(a.std));
  // Loading it with the runtime checks the file the way a server will read it.
  const auto served = runtime::Model::load(a.out);
  std::cout << "exported " << a.model << " to " << a.out << "\n" << served.describe();
  return 0;
}

}  // namespace

Run add_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  app.add_option("--model", a->model, "TorchScript student (torch.jit.script or torch.jit.trace of an nn.Sequential)")
      ->required();
  app.add_option("--out", a->out, "HDF5 file to write")->required();
  app.add_option("--input-shape", a->input_shape, "Shape of one input, e.g. 1,28,28")
      ->delimiter(',')
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--mean", a->mean, "Normalisation the runtime applies to raw inputs: (x - mean) / std")
      ->capture_default_str();
  app.add_option("--std", a->std, "See --mean")->capture_default_str()->check(CLI::PositiveNumber);
  return [a] { return run_export(*a); };
}

}  // namespace kdistill::cli
