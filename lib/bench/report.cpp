#include "kdistill/bench/report.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/version.h>

#include "kdistill/version.h"

namespace kdistill::bench {
namespace {

const LatencyStats* at_batch(const ModelReport& m, int64_t batch) {
  for (const auto& l : m.latency) {
    if (l.batch == batch) return &l;
  }
  return nullptr;
}

std::vector<int64_t> all_batches(const Report& r) {
  std::vector<int64_t> out;
  for (const auto& [name, m] : r.models) {
    for (const auto& l : m.latency) {
      if (std::find(out.begin(), out.end(), l.batch) == out.end()) out.push_back(l.batch);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string thousands(double v) {
  auto s = fmt::format("{:.0f}", v);
  for (int i = static_cast<int>(s.size()) - 3; i > (s[0] == '-' ? 1 : 0); i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s;
}

}  // namespace

const ModelReport* Report::find(const std::string& name) const {
  for (const auto& [n, m] : models) {
    if (n == name) return &m;
  }
  return nullptr;
}

std::string to_json(const Report& r) {
  using nlohmann::ordered_json;
  ordered_json j;
  j["kdistill_version"] = kVersion;
  j["torch_version"] = TORCH_VERSION;
  j["device"] = r.device;
  j["threads"] = r.threads;
  j["precision"] = r.precision;
  if (!r.dataset_name.empty()) {
    ordered_json d = {{"name", r.dataset_name}};
    if (r.train >= 0) d["train"] = r.train;
    if (r.test >= 0) d["test"] = r.test;
    if (r.labeled >= 0) d["labeled"] = r.labeled;
    j["dataset"] = d;
  }
  if (r.temperature > 0) j["kd"] = {{"temperature", r.temperature}, {"alpha", r.alpha}};
  ordered_json models = ordered_json::object();
  for (const auto& [name, m] : r.models) {
    ordered_json e = {{"arch", m.arch}, {"params", m.params}};
    if (m.accuracy >= 0) e["accuracy"] = m.accuracy;
    if (m.agreement >= 0) e["agreement"] = m.agreement;
    if (m.train_samples_per_s >= 0) e["train_samples_per_s"] = m.train_samples_per_s;
    if (m.size_bytes >= 0) e["size_bytes"] = m.size_bytes;
    if (m.accuracy_fp32 >= 0) e["accuracy_fp32"] = m.accuracy_fp32;
    if (m.agreement_with_fp32 >= 0) e["agreement_with_fp32"] = m.agreement_with_fp32;
    ordered_json lat = ordered_json::object();
    for (const auto& l : m.latency) {
      lat[std::to_string(l.batch)] = {{"p50", l.p50_ms},   {"p90", l.p90_ms},   {"p99", l.p99_ms},
                                      {"mean", l.mean_ms}, {"max", l.max_ms},   {"iqr", l.iqr_ms},
                                      {"cold", l.cold_ms}, {"iters", l.iters}, {"samples_per_s", l.samples_per_s}};
    }
    e["latency_ms"] = lat;
    if (m.bits_per_byte >= 0) {
      e["bits_per_byte"] = m.bits_per_byte;
      e["perplexity"] = std::exp2(m.bits_per_byte);  // per byte (per token for other vocabularies)
    }
    if (m.tokens_per_s >= 0) e["tokens_per_s"] = m.tokens_per_s;
    if (!m.generation.empty()) {
      ordered_json gen = ordered_json::object();
      for (const auto& g : m.generation) {
        gen[std::to_string(g.batch)] = {{"method", g.method},
                                        {"prompt", g.prompt},
                                        {"new_tokens", g.new_tokens},
                                        {"prefill_ms", {{"p50", g.prefill_p50_ms}, {"p99", g.prefill_p99_ms}}},
                                        {"decode_ms_per_token", {{"p50", g.decode_p50_ms}, {"p99", g.decode_p99_ms}}},
                                        {"tokens_per_s", g.tokens_per_s}};
      }
      e["generation"] = gen;
    }
    models[name] = e;
  }
  j["models"] = models;
  return j.dump(2) + "\n";
}

std::string to_markdown(const Report& r, const std::string& baseline) {
  const auto batches = all_batches(r);
  const ModelReport* base = r.find(baseline);
  std::ostringstream out;
  out << "| model | arch | params | accuracy | agreement | train samples/s |";
  for (auto b : batches) out << " b" << b << " p50 / p99 (ms) |";
  if (base) {
    for (auto b : batches) out << " speed-up b" << b << " p50 / p99 |";
  }
  out << "\n|---|---|---:|---:|---:|---:|";
  for (size_t i = 0; i < batches.size() * (base ? 2 : 1); ++i) out << "---:|";
  out << "\n";
  for (const auto& [name, m] : r.models) {
    out << "| " << name << " | " << m.arch << " | " << thousands(static_cast<double>(m.params)) << " | "
        << (m.accuracy >= 0 ? fmt::format("{:.2f}%", 100 * m.accuracy) : "-") << " | "
        << (m.agreement >= 0 ? fmt::format("{:.2f}%", 100 * m.agreement) : "-") << " | "
        << (m.train_samples_per_s >= 0 ? thousands(m.train_samples_per_s) : "-") << " |";
    for (auto b : batches) {
      const auto* l = at_batch(m, b);
      out << " " << (l ? fmt::format("{:.4g} / {:.4g}", l->p50_ms, l->p99_ms) : "-") << " |";
    }
    if (base) {
      for (auto b : batches) {
        const auto* l = at_batch(m, b);
        const auto* lb = at_batch(*base, b);
        out << " " << (l && lb ? fmt::format("{:.1f}x / {:.1f}x", lb->p50_ms / l->p50_ms, lb->p99_ms / l->p99_ms) : "-")
            << " |";
      }
    }
    out << "\n";
  }
  return out.str();
}

std::string to_csv(const Report& r) {
  std::ostringstream out;
  out << "model,arch,params,batch,mean_ms,p50_ms,p90_ms,p99_ms,max_ms,iqr_ms,samples_per_s,cold_ms,accuracy,agreement\n";
  for (const auto& [name, m] : r.models) {
    for (const auto& l : m.latency) {
      out << name << ",\"" << m.arch << "\"," << m.params << "," << l.batch << "," << l.mean_ms << "," << l.p50_ms << ","
          << l.p90_ms << "," << l.p99_ms << "," << l.max_ms << "," << l.iqr_ms << "," << l.samples_per_s << ","
          << l.cold_ms << "," << (m.accuracy >= 0 ? std::to_string(m.accuracy) : "") << ","
          << (m.agreement >= 0 ? std::to_string(m.agreement) : "") << "\n";
    }
  }
  return out.str();
}

}  // namespace kdistill::bench
