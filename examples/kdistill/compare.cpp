// `kdistill compare`: two models on the same labelled samples, as a pair: is B's gain over A real?
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "commands.h"
#include "kdistill/kdistill.h"

namespace kdistill::cli {

Run add_compare(CLI::App& app) {
  struct Args {
    std::string a, b, data, split = "test", device = "cpu", batches = "1,256", json, disagreements;
    double unsure_below = 0.5;
    int64_t resamples = 10000;
    uint64_t seed = 0;
    int threads = 0;
    bool no_latency = false;
  };
  auto a = std::make_shared<Args>();
  app.add_option("--a", a->a, "TorchScript model A (the baseline)")->required();
  app.add_option("--b", a->b, "TorchScript model B (the candidate)")->required();
  app.add_option("--data", a->data, "Data: idx:DIR, hdf5:FILE[:FEATURES:LABELS] or a directory")->required();
  app.add_option("--split", a->split, "train or test")->capture_default_str();
  app.add_option("--device", a->device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--batch", a->batches, "Batch sizes to time both models at")->capture_default_str();
  app.add_flag("--no-latency", a->no_latency, "Skip the timing");
  app.add_option("--threads", a->threads, "Intra-op threads while timing (0: LibTorch's default)")->capture_default_str();
  app.add_option("--resamples", a->resamples, "Bootstrap resamples")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--seed", a->seed, "Bootstrap seed")->capture_default_str();
  app.add_option("--json", a->json, "Write the comparison as JSON here");
  app.add_option("--disagreements", a->disagreements,
                 "Write the samples to review (the models disagree, or either is unsure) as CSV here");
  app.add_option("--unsure-below", a->unsure_below, "A confidence below this counts as unsure")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  return [a] {
    const auto device = parse_device(a->device);
    auto data = data::load_spec(a->data, a->split);
    auto ma = Model::load_torchscript(a->a, device), mb = Model::load_torchscript(a->b, device);
    auto o = bench::PairedOptions()
                 .device(device)
                 .latency(bench::LatencyOptions().threads(a->threads))
                 .bootstrap(metrics::BootstrapOptions().resamples(a->resamples).seed(a->seed));
    o.batch_sizes(a->no_latency ? std::vector<int64_t>{} : parse_int_list("--batch", a->batches));
    auto c = bench::compare_paired(ma, mb, data, o);
    std::cout << bench::to_markdown(c);
    if (!a->json.empty()) io::atomic_write_string(a->json, bench::to_json(c));
    if (!a->disagreements.empty()) {
      io::atomic_write_string(a->disagreements, bench::disagreements_csv(c, a->unsure_below));
    }
    return 0;
  };
}

}  // namespace kdistill::cli
