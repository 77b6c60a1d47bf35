#include "kdistill/bench/paired.h"

#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/metrics/evaluate.h"
#include "kdistill/metrics/metrics.h"
#include "kdistill/version.h"

namespace kdistill::bench {
namespace {

PairedSide score(Model& m, const data::TensorDataset& data, const PairedOptions& o, const char* which) {
  PairedSide s;
  s.arch = m.arch();
  s.params = m.num_parameters();
  m.to(o.device());
  auto logits = predict(m, data).to(torch::kCPU, torch::kFloat);
  check(logits.dim() == 2 && logits.size(1) == data.num_classes(), "compare: model ", which, " returns ",
        logits.sizes(), " for data with ", data.num_classes(), " classes");
  auto [conf, pred] = torch::softmax(logits, 1).max(1);
  s.predictions = pred;
  s.confidence = conf;
  s.accuracy = (pred == data.targets()).to(torch::kDouble).mean().item<double>();
  if (!o.batch_sizes().empty()) s.latency = measure_model(m, data.sample_shape(), o.batch_sizes(), o.device(), o.latency());
  return s;
}

nlohmann::ordered_json side_json(const PairedSide& s) {
  nlohmann::ordered_json j = {{"arch", s.arch}, {"params", s.params}, {"accuracy", s.accuracy}};
  nlohmann::ordered_json lat = nlohmann::ordered_json::object();
  for (const auto& l : s.latency) lat[std::to_string(l.batch)] = {{"p50", l.p50_ms}, {"p90", l.p90_ms}, {"p99", l.p99_ms}};
  j["latency_ms"] = lat;
  return j;
}

}  // namespace

PairedComparison compare_paired(Model& a, Model& b, const data::TensorDataset& data, const PairedOptions& o) {
  check(data.size() > 0, "compare: the data set '", data.name(), "' is empty");
  check(data.num_labelled() == data.size(), "compare: every sample needs a label; '", data.name(), "' has ",
        data.size() - data.num_labelled(), " without one");
  PairedComparison c;
  c.n = data.size();
  c.dataset = data.name();
  c.labels = data.targets().to(torch::kLong);
  c.a = score(a, data, o, "A");
  c.b = score(b, data, o, "B");
  auto ra = c.a.predictions == c.labels, rb = c.b.predictions == c.labels;
  c.a_only = (ra & ~rb).sum().item<int64_t>();
  c.b_only = (rb & ~ra).sum().item<int64_t>();
  c.difference = c.b.accuracy - c.a.accuracy;
  c.mcnemar_p = metrics::mcnemar_exact_p(c.a_only, c.b_only);
  std::tie(c.ci_low, c.ci_high) = metrics::bootstrap_difference_ci(ra, rb, o.bootstrap());
  c.ci_level = o.bootstrap().level();
  c.agreement = (c.a.predictions == c.b.predictions).to(torch::kDouble).mean().item<double>();
  return c;
}

std::string to_json(const PairedComparison& c) {
  nlohmann::ordered_json j = {{"kdistill_version", kVersion},
                              {"dataset", c.dataset},
                              {"n", c.n},
                              {"a", side_json(c.a)},
                              {"b", side_json(c.b)},
                              {"difference", c.difference},
                              {"a_only_correct", c.a_only},
                              {"b_only_correct", c.b_only},
                              {"mcnemar_p", c.mcnemar_p},
                              {"ci95", {c.ci_low, c.ci_high}},
                              {"ci_level", c.ci_level},
                              {"agreement", c.agreement}};
  nlohmann::ordered_json lat = nlohmann::ordered_json::object();
  for (size_t i = 0; i < c.a.latency.size() && i < c.b.latency.size(); ++i) {
    lat[std::to_string(c.a.latency[i].batch)] = c.b.latency[i].p50_ms - c.a.latency[i].p50_ms;
  }
  j["latency_p50_difference_ms"] = lat;
  return j.dump(2) + "\n";
}

std::string to_markdown(const PairedComparison& c) {
  std::ostringstream out;
  out << "| model | arch | params | accuracy |";
  for (const auto& l : c.a.latency) out << " b" << l.batch << " p50 (ms) |";
  out << "\n|---|---|---:|---:|";
  for (size_t i = 0; i < c.a.latency.size(); ++i) out << "---:|";
  out << "\n";
  for (const auto* s : {&c.a, &c.b}) {
    out << "| " << (s == &c.a ? "A" : "B") << " | " << s->arch << " | " << s->params << " | "
        << fmt::format("{:.2f}%", 100 * s->accuracy) << " |";
    for (const auto& l : s->latency) out << fmt::format(" {:.4g} |", l.p50_ms);
    out << "\n";
  }
  out << fmt::format(
      "\nB - A: {:+.2f} points ({:.0f}% CI {:+.2f} to {:+.2f}) on {} samples; {} only A got right, {} only B; "
      "McNemar exact p = {:.3g}; agreement {:.2f}%.\n",
      100 * c.difference, 100 * c.ci_level, 100 * c.ci_low, 100 * c.ci_high, c.n, c.a_only, c.b_only, c.mcnemar_p,
      100 * c.agreement);
  out << (c.mcnemar_p < 0.05 ? "The difference is significant at p < 0.05.\n"
                             : "The difference is not significant at p < 0.05: it may be noise.\n");
  return out.str();
}

std::string disagreements_csv(const PairedComparison& c, double unsure_below) {
  check(unsure_below >= 0 && unsure_below <= 1, "disagreements_csv: unsure_below must be in [0, 1], got ", unsure_below);
  auto review = (c.a.predictions != c.b.predictions) | (c.a.confidence < unsure_below) | (c.b.confidence < unsure_below);
  auto rows = review.nonzero().flatten();
  std::ostringstream out;
  out << "index,label,a_prediction,a_confidence,b_prediction,b_confidence\n";
  auto ap = c.a.predictions.accessor<int64_t, 1>(), bp = c.b.predictions.accessor<int64_t, 1>();
  auto ac = c.a.confidence.accessor<float, 1>(), bc = c.b.confidence.accessor<float, 1>();
  auto y = c.labels.accessor<int64_t, 1>();
  for (int64_t k = 0; k < rows.size(0); ++k) {
    const int64_t i = rows[k].item<int64_t>();
    out << fmt::format("{},{},{},{:.4f},{},{:.4f}\n", i, y[i], ap[i], ac[i], bp[i], bc[i]);
  }
  return out.str();
}

}  // namespace kdistill::bench
