#include "train/metrics_log.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>

#include "kdistill/io/atomic_file.h"

namespace kdistill::detail {

MetricsLog::MetricsLog(std::string path, int64_t resumed_step, int64_t resumed_epoch) : path_(std::move(path)) {
  if (!std::filesystem::exists(path_)) return;
  // A run that starts afresh where an earlier one died before its first checkpoint keeps nothing.
  std::string kept;
  for (const auto& line : resumed_step >= 0 ? io::read_lines(path_) : std::vector<std::string>{}) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) continue;
    const bool keep = j.value("type", "") == "epoch" ? j.value("epoch", INT64_MAX) < resumed_epoch
                                                     : j.value("step", INT64_MAX) <= resumed_step;
    if (keep) kept += line + "\n";
  }
  io::atomic_write_string(path_, kept);
}

void MetricsLog::step(int64_t step, int64_t epoch, double loss, double lr,
                      const std::map<std::string, double>& terms) const {
  if (!enabled()) return;
  nlohmann::json line = {{"type", "step"}, {"step", step}, {"epoch", epoch}, {"loss", loss}, {"lr", lr},
                         {"terms", terms}};
  io::append_line(path_, line.dump());
}

void MetricsLog::epoch(const EpochMetrics& m, bool with_eval) const {
  if (!enabled()) return;
  nlohmann::json line = {{"type", "epoch"}, {"epoch", m.epoch},         {"step", m.step},
                         {"train_loss", m.train_loss}, {"terms", m.terms}, {"lr", m.lr},
                         {"samples_per_s", m.samples_per_s}};
  if (with_eval) {
    line["accuracy"] = m.eval.accuracy;
    line["nll"] = m.eval.nll;
    line["ece"] = m.eval.ece;
    if (m.eval.agreement >= 0) line["agreement"] = m.eval.agreement;
  }
  io::append_line(path_, line.dump());
}

}  // namespace kdistill::detail
