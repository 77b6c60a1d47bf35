// Tests of kdistill::bench: quantiles, the measurement loop, model latency and the report formats.
// No assertion depends on how fast this (shared) machine is.

#include <torch/torch.h>
#include <torch/version.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "kdistill/bench/latency.h"
#include "kdistill/bench/report.h"
#include "kdistill/core/error.h"
#include "kdistill/models/builders.h"
#include "kdistill/models/model.h"
#include "kdistill/version.h"
#include "support.h"

namespace {

namespace bench = kdistill::bench;

bench::LatencyOptions tiny() {
  return bench::LatencyOptions().warmup_iters(3).warmup_seconds(0).min_iters(50).min_seconds(0);
}

bench::LatencyStats stats(int64_t batch, double p50) {
  bench::LatencyStats s;
  s.batch = batch;
  s.iters = 100;
  s.cold_ms = 10 * p50;
  s.mean_ms = 1.1 * p50;
  s.p50_ms = p50;
  s.p90_ms = 1.2 * p50;
  s.p99_ms = 1.5 * p50;
  s.max_ms = 2 * p50;
  s.iqr_ms = 0.1 * p50;
  s.samples_per_s = 1000.0 * static_cast<double>(batch) / s.mean_ms;
  s.threads = 2;
  return s;
}

bench::Report sample_report() {
  bench::Report r;
  r.device = "cpu";
  r.threads = 2;
  r.dataset_name = "mnist";
  r.train = 60000;
  r.test = 10000;
  r.labeled = 1000;
  r.temperature = 4.0;
  r.alpha = 0.9;
  bench::ModelReport teacher;
  teacher.arch = "mlp:1200,1200";
  teacher.params = 2395210;
  teacher.accuracy = 0.98;
  teacher.train_samples_per_s = 1234.5;  // agreement and size_bytes stay -1
  teacher.latency = {stats(1, 3.0), stats(64, 20.0)};
  bench::ModelReport student;
  student.arch = "mlp:64";
  student.params = 50890;
  student.accuracy = 0.97;
  student.agreement = 0.95;
  student.size_bytes = 204000;  // train_samples_per_s stays -1
  student.latency = {stats(1, 0.7), stats(64, 2.5)};
  r.models = {{"teacher", teacher}, {"student_kd", student}};
  return r;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Cells of a Markdown table row "| a | b |" -> {"a", "b"}.
std::vector<std::string> md_cells(const std::string& row) {
  std::vector<std::string> cells;
  std::string cur;
  for (size_t i = 1; i < row.size(); ++i) {
    if (row[i] == '|') {
      cells.push_back(trim(cur));
      cur.clear();
    } else {
      cur += row[i];
    }
  }
  return cells;
}

// Fields of a CSV line; double quotes protect commas.
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    else if (c == ',' && !quoted) out.emplace_back();
    else out.back() += c;
  }
  return out;
}

}  // namespace

TEST(BenchQuantile, LinearInterpolationBetweenOrderStatistics) {
  EXPECT_DOUBLE_EQ(bench::quantile({1, 2, 3, 4}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(bench::quantile({1, 2, 3, 4}, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(bench::quantile({1, 2, 3, 4}, 1.0), 4.0);
  EXPECT_DOUBLE_EQ(bench::quantile({1, 2, 3, 4}, 0.25), 1.75);  // position 0.75 between 1 and 2
  EXPECT_DOUBLE_EQ(bench::quantile({4, 1, 3, 2}, 0.5), 2.5);    // unsorted input
  EXPECT_DOUBLE_EQ(bench::quantile({9, -3, 5}, 0.0), -3.0);
  EXPECT_DOUBLE_EQ(bench::quantile({9, -3, 5}, 1.0), 9.0);
  EXPECT_DOUBLE_EQ(bench::quantile({10, 20}, 0.9), 19.0);
  EXPECT_DOUBLE_EQ(bench::quantile({7}, 0.3), 7.0);
  EXPECT_THROW(bench::quantile({}, 0.5), kdistill::Error);
  EXPECT_THROW(bench::quantile({1, 2}, -0.1), kdistill::Error);
  EXPECT_THROW(bench::quantile({1, 2}, 1.5), kdistill::Error);
}

TEST(BenchMeasure, CountsCallsAndOrdersStatistics) {
  for (int64_t batch : {1, 4}) {
    int64_t calls = 0, syncs = 0;
    auto s = bench::measure(
        [&] {
          ++calls;
          std::this_thread::sleep_for(std::chrono::microseconds(20));
        },
        batch, tiny(), [&] { ++syncs; });
    EXPECT_EQ(s.batch, batch);
    EXPECT_GE(s.iters, std::max<int64_t>(50 / batch, 20));
    EXPECT_EQ(calls, 1 + 3 + s.iters) << "cold call + warm-up + timed calls";
    EXPECT_EQ(syncs, calls);
    EXPECT_GT(s.p50_ms, 0.0);  // every call sleeps
    EXPECT_GT(s.cold_ms, 0.0);
    EXPECT_LE(s.p50_ms, s.p90_ms);
    EXPECT_LE(s.p90_ms, s.p99_ms);
    EXPECT_LE(s.p99_ms, s.max_ms);
    EXPECT_LE(s.mean_ms, s.max_ms);
    EXPECT_GE(s.iqr_ms, 0.0);
    EXPECT_NEAR(s.samples_per_s, static_cast<double>(batch) * 1000.0 / s.mean_ms, 1e-9 * s.samples_per_s);
    EXPECT_EQ(s.threads, torch::get_num_threads());
  }
}

TEST(BenchMeasure, MaxSecondsStopsSlowCallsAndBadArgumentsThrow) {
  int64_t calls = 0;
  // Every call takes >= 2 ms, so the 1 ms cap ends timing after the first timed call.
  auto s = bench::measure(
      [&] {
        ++calls;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      },
      1, tiny().min_iters(1000000).max_seconds(0.001));
  EXPECT_EQ(s.iters, 1);
  EXPECT_EQ(calls, 1 + 3 + 1);
  auto noop = [] {};
  EXPECT_THROW(bench::measure(noop, 0, tiny()), kdistill::Error);
  EXPECT_THROW(bench::measure(noop, 1, tiny().min_iters(0)), kdistill::Error);
  EXPECT_THROW(bench::measure(noop, 1, tiny().max_seconds(0)), kdistill::Error);
}

TEST(BenchMeasureModel, OneEntryPerBatchAndTrainingModeRestored) {
  torch::manual_seed(0);
  kdistill::Model model(kdistill::mlp(784, {16}, 10), "mlp:16");
  const int threads_before = torch::get_num_threads();
  for (bool training : {true, false}) {
    model.train(training);
    auto out = bench::measure_model(model, {1, 28, 28}, {1, 4}, torch::kCPU, tiny());
    ASSERT_EQ(out.size(), 2u);
    EXPECT_EQ(out[0].batch, 1);
    EXPECT_EQ(out[1].batch, 4);
    EXPECT_GE(out[0].iters, 50);
    EXPECT_GE(out[1].iters, 20);
    for (const auto& s : out) {
      EXPECT_LE(s.p50_ms, s.p99_ms);
      EXPECT_LE(s.p99_ms, s.max_ms);
    }
    EXPECT_EQ(model.is_training(), training);
    EXPECT_TRUE(at::GradMode::is_enabled());  // the no-grad guard does not leak
  }
  EXPECT_EQ(torch::get_num_threads(), threads_before);  // threads(0) leaves the setting alone
  EXPECT_THROW(bench::measure_model(model, {784}, {}, torch::kCPU, tiny()), kdistill::Error);
  EXPECT_THROW(bench::measure_model(model, {784}, {0}, torch::kCPU, tiny()), kdistill::Error);
  kdistill::Model empty;
  EXPECT_THROW(bench::measure_model(empty, {784}, {1}, torch::kCPU, tiny()), kdistill::Error);
}

TEST(BenchReport, JsonRoundTripHasSchemaAndOmitsUnmeasured) {
  const auto r = sample_report();
  ASSERT_NE(r.find("teacher"), nullptr);
  EXPECT_EQ(r.find("student_kd")->arch, "mlp:64");
  EXPECT_EQ(r.find("nobody"), nullptr);

  const std::string text = bench::to_json(r);
  nlohmann::ordered_json j;
  ASSERT_NO_THROW(j = nlohmann::ordered_json::parse(text)) << text;
  EXPECT_EQ(j.at("kdistill_version").get<std::string>(), kdistill::kVersion);
  EXPECT_EQ(j.at("torch_version").get<std::string>(), TORCH_VERSION);
  EXPECT_EQ(j.at("device").get<std::string>(), "cpu");
  EXPECT_EQ(j.at("threads").get<int>(), 2);
  EXPECT_EQ(j.at("dataset").at("name").get<std::string>(), "mnist");
  EXPECT_EQ(j.at("dataset").at("train").get<int64_t>(), 60000);
  EXPECT_EQ(j.at("dataset").at("test").get<int64_t>(), 10000);
  EXPECT_EQ(j.at("dataset").at("labeled").get<int64_t>(), 1000);
  EXPECT_EQ(j.at("kd").at("temperature").get<double>(), 4.0);
  EXPECT_EQ(j.at("kd").at("alpha").get<double>(), 0.9);

  const auto& models = j.at("models");
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models.begin().key(), "teacher");  // report order kept
  const auto& t = models.at("teacher");
  EXPECT_EQ(t.at("arch").get<std::string>(), "mlp:1200,1200");
  EXPECT_EQ(t.at("params").get<int64_t>(), 2395210);
  EXPECT_EQ(t.at("accuracy").get<double>(), 0.98);
  EXPECT_EQ(t.at("train_samples_per_s").get<double>(), 1234.5);
  EXPECT_FALSE(t.contains("agreement"));
  EXPECT_FALSE(t.contains("size_bytes"));
  const std::vector<std::pair<std::string, double>> teacher_p50 = {{"1", 3.0}, {"64", 20.0}};
  for (const auto& [key, p50] : teacher_p50) {
    const auto& l = t.at("latency_ms").at(key);
    EXPECT_EQ(l.at("p50").get<double>(), p50) << key;
    EXPECT_EQ(l.at("p90").get<double>(), 1.2 * p50) << key;
    EXPECT_EQ(l.at("p99").get<double>(), 1.5 * p50) << key;
  }
  const auto& s = models.at("student_kd");
  EXPECT_EQ(s.at("agreement").get<double>(), 0.95);
  EXPECT_EQ(s.at("size_bytes").get<int64_t>(), 204000);
  EXPECT_FALSE(s.contains("train_samples_per_s"));
  EXPECT_EQ(s.at("latency_ms").at("1").at("p50").get<double>(), 0.7);

  // No dataset name and a negative temperature: neither entry; a negative count is left out.
  bench::Report bare;
  auto jb = nlohmann::json::parse(bench::to_json(bare));
  EXPECT_FALSE(jb.contains("dataset"));
  EXPECT_FALSE(jb.contains("kd"));
  EXPECT_TRUE(jb.at("models").is_object());
  EXPECT_TRUE(jb.at("models").empty());
  bare.dataset_name = "mnist";
  bare.train = 100;
  auto jd = nlohmann::json::parse(bench::to_json(bare));
  EXPECT_EQ(jd.at("dataset").at("train").get<int64_t>(), 100);
  EXPECT_FALSE(jd.at("dataset").contains("labeled"));
  EXPECT_FALSE(jd.at("dataset").contains("test"));
}

TEST(BenchReport, MarkdownSpeedUpIsBaselineOverModelP50) {
  const auto r = sample_report();
  const auto rows = lines_of(bench::to_markdown(r));
  ASSERT_EQ(rows.size(), 2u + r.models.size());
  const auto header = md_cells(rows[0]);
  ASSERT_GE(header.size(), 2u);
  EXPECT_EQ(header[0], "model");
  EXPECT_EQ(rows[1].rfind("|---", 0), 0u) << rows[1];
  EXPECT_EQ(md_cells(rows[1]).size(), header.size());
  for (const std::string b : {"1", "64"}) {
    const auto col = std::find(header.begin(), header.end(), "speed-up b" + b + " p50 / p99");
    ASSERT_NE(col, header.end()) << rows[0];
    const auto idx = static_cast<size_t>(col - header.begin());
    // The expectation is computed from the report's own numbers: baseline over model, p50 and p99.
    auto stat = [&](size_t model) {
      for (const auto& l : r.models[model].second.latency) {
        if (std::to_string(l.batch) == b) return l;
      }
      return bench::LatencyStats{};
    };
    const auto t = stat(0), s = stat(1);
    char want[64];
    std::snprintf(want, sizeof want, "%.1fx / %.1fx", t.p50_ms / s.p50_ms, t.p99_ms / s.p99_ms);
    const auto teacher = md_cells(rows[2]);
    const auto student = md_cells(rows[3]);
    ASSERT_EQ(student.size(), header.size()) << rows[3];
    EXPECT_EQ(teacher[0], "teacher");
    EXPECT_EQ(student[0], "student_kd");
    EXPECT_EQ(teacher[idx], "1.0x / 1.0x");
    EXPECT_EQ(student[idx], want) << "batch " << b;
  }
  // Without the baseline in the report there is no speed-up column.
  EXPECT_EQ(bench::to_markdown(r, "nobody").find("speed-up"), std::string::npos);
}

TEST(BenchReport, CsvHasOneLinePerModelAndBatch) {
  const auto r = sample_report();
  const auto lines = lines_of(bench::to_csv(r));
  ASSERT_EQ(lines.size(), 1u + 4u);
  const auto header = csv_fields(lines[0]);
  EXPECT_EQ(header.front(), "model");
  const std::vector<std::tuple<std::string, std::string, int64_t, double>> want = {
      {"teacher", "mlp:1200,1200", 1, 3.0}, {"teacher", "mlp:1200,1200", 64, 20.0},
      {"student_kd", "mlp:64", 1, 0.7}, {"student_kd", "mlp:64", 64, 2.5}};
  const auto p50_col = static_cast<size_t>(std::find(header.begin(), header.end(), "p50_ms") - header.begin());
  ASSERT_LT(p50_col, header.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const auto f = csv_fields(lines[i + 1]);
    ASSERT_EQ(f.size(), header.size()) << lines[i + 1];
    EXPECT_EQ(f[0], std::get<0>(want[i]));
    EXPECT_EQ(f[1], std::get<1>(want[i]));
    EXPECT_EQ(std::stoll(f[3]), std::get<2>(want[i]));
    EXPECT_NEAR(std::stod(f[p50_col]), std::get<3>(want[i]), 1e-6 * std::get<3>(want[i]));
  }
}
