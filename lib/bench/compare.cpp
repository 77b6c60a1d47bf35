#include "kdistill/bench/compare.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>

#include <fmt/format.h>
#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/core/system.h"
#include "kdistill/metrics/metrics.h"
#include "kdistill/export/export.h"
#include "kdistill/runtime/runtime.h"
#include "kdistill/metrics/evaluate.h"

namespace kdistill::bench {
namespace {

ModelReport describe(const Model& m) {
  ModelReport r;
  r.arch = m.arch();
  r.params = m.num_parameters();
  r.size_bytes = m.serialized_bytes();
  return r;
}

std::vector<LatencyStats> time_eigen(const Model& student, const CompareOptions& o) {
  static std::atomic<int> counter{0};
  const auto path = (std::filesystem::temp_directory_path() /
                     fmt::format("kdistill-compare-{}-{}.h5", ::getpid(), counter++)).string();
  export_model(student, path, ExportOptions().input_shape(o.input_shape()));
  auto rt = runtime::Model::load(path);
  std::filesystem::remove(path);
  std::vector<LatencyStats> out;
  for (auto b : o.batch_sizes()) {
    std::vector<float> in(static_cast<size_t>(b * rt.input_size()), 0.5f);
    std::vector<float> logits(static_cast<size_t>(b * rt.num_classes()));
    out.push_back(measure([&] { rt.predict(in.data(), static_cast<int>(b), logits.data()); }, b, o.latency()));
  }
  return out;
}

}  // namespace

Report compare(Model& teacher, Model& student, const CompareOptions& o, const data::TensorDataset* data) {
  check(!o.input_shape().empty(), "bench::compare: input_shape is required");
  check(o.libtorch() || o.eigen(), "bench::compare: nothing to measure (libtorch and eigen are both off)");
  const auto device = o.device();
  check(!o.eigen() || device.is_cpu(), "bench::compare: the Eigen runtime runs on the CPU only, not on ", device);
  set_threads(o.latency().threads());
  Report report;
  report.device = device.str();
  report.threads = torch::get_num_threads();
  report.models = {{"teacher", describe(teacher)}, {"student", describe(student)}};
  if (data) {
    teacher.to(device);
    student.to(device);
    auto tl = predict(teacher, *data), sl = predict(student, *data);
    check(tl.dim() == 2 && tl.size(1) == data->num_classes() && sl.dim() == 2 && sl.size(1) == data->num_classes(),
          "bench::compare: the models return ", tl.sizes(), " and ", sl.sizes(), " for ", data->num_classes(), " classes");
    report.dataset_name = data->name();
    report.test = data->size();
    report.models[0].second.accuracy = metrics::accuracy(tl, data->targets());
    report.models[1].second.accuracy = metrics::accuracy(sl, data->targets());
    report.models[1].second.agreement = metrics::agreement(sl, tl);
  }
  if (o.libtorch()) {
    report.models[0].second.latency = measure_model(teacher, o.input_shape(), o.batch_sizes(), device, o.latency());
    report.models[1].second.latency = measure_model(student, o.input_shape(), o.batch_sizes(), device, o.latency());
  }
  if (o.eigen()) {
    auto r = report.models[1].second;
    r.arch += " (eigen runtime)";
    r.latency = time_eigen(student, o);
    report.models.emplace_back("student_eigen", r);
  }
  return report;
}

}  // namespace kdistill::bench
