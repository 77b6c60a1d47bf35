// compare_paired against counts made by hand from the two models' own outputs.
#include "kdistill/bench/paired.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/models/builders.h"
#include "support.h"

namespace kdistill::test {

TEST(Paired, CountsIntervalAgreementAndTheReviewList) {
  auto data = rule_data(300, 1);
  torch::manual_seed(2);
  Model a(mlp(8, {16}, 3), "mlp:16");
  torch::manual_seed(3);
  Model b(mlp(8, {16}, 3), "mlp:16");
  auto o = bench::PairedOptions().batch_sizes({1, 4}).latency(
      bench::LatencyOptions().warmup_iters(1).warmup_seconds(0).min_iters(5).min_seconds(0));
  auto c = bench::compare_paired(a, b, data, o);
  // By hand: each model's own outputs.
  torch::NoGradGuard g;
  a.eval();
  b.eval();
  auto pa = torch::softmax(a.forward(data.features()), 1), pb = torch::softmax(b.forward(data.features()), 1);
  auto ya = pa.argmax(1), yb = pb.argmax(1), y = data.targets();
  const auto ra = ya == y, rb = yb == y;
  EXPECT_EQ(c.n, 300);
  EXPECT_DOUBLE_EQ(c.a.accuracy, ra.sum().item<double>() / 300);
  EXPECT_DOUBLE_EQ(c.difference, c.b.accuracy - c.a.accuracy);
  EXPECT_EQ(c.a_only, (ra & ~rb).sum().item<int64_t>());
  EXPECT_EQ(c.b_only, (rb & ~ra).sum().item<int64_t>());
  EXPECT_DOUBLE_EQ(c.mcnemar_p, metrics::mcnemar_exact_p(c.a_only, c.b_only));
  EXPECT_DOUBLE_EQ(c.agreement, (ya == yb).sum().item<double>() / 300);
  EXPECT_LE(c.ci_low, c.difference);
  EXPECT_GE(c.ci_high, c.difference);
  ASSERT_EQ(c.a.latency.size(), 2u);
  EXPECT_EQ(c.b.latency[1].batch, 4);
  EXPECT_GT(c.b.latency[0].p50_ms, 0);
  // JSON: the documented keys (docs/cli.md) with their values.
  auto j = nlohmann::json::parse(bench::to_json(c));
  EXPECT_EQ(j["n"], 300);
  EXPECT_EQ(j["a"]["accuracy"].get<double>(), c.a.accuracy);
  EXPECT_EQ(j["difference"].get<double>(), c.difference);
  EXPECT_EQ(j["mcnemar_p"].get<double>(), c.mcnemar_p);
  EXPECT_EQ(j["ci95"][0].get<double>(), c.ci_low);
  EXPECT_EQ(j["agreement"].get<double>(), c.agreement);
  EXPECT_TRUE(j["latency_p50_difference_ms"].contains("4"));
  // The review list: every disagreement, and every sample either model is unsure of.
  const double unsure = 0.6;
  auto want = (ya != yb) | (std::get<0>(pa.max(1)) < unsure) | (std::get<0>(pb.max(1)) < unsure);
  std::istringstream csv(bench::disagreements_csv(c, unsure));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "index,label,a_prediction,a_confidence,b_prediction,b_confidence");
  int64_t rows = 0;
  while (std::getline(csv, line)) {
    const auto i = std::stoll(line.substr(0, line.find(',')));
    EXPECT_TRUE(want[i].item<bool>()) << line;
    const auto second = line.find(',', line.find(',') + 1);
    EXPECT_EQ(std::stoll(line.substr(line.find(',') + 1)), y[i].item<int64_t>()) << line;
    EXPECT_EQ(std::stoll(line.substr(second + 1)), ya[i].item<int64_t>()) << line;
    ++rows;
  }
  EXPECT_EQ(rows, want.sum().item<int64_t>());
  EXPECT_GT(rows, 0);
  EXPECT_THAT(bench::to_markdown(c), ::testing::HasSubstr("McNemar exact p ="));
}

TEST(Paired, RefusesUnlabelledSamplesAndMismatchedClasses) {
  auto data = rule_data(50, 1);
  Model a(mlp(8, {4}, 3), "a"), five(mlp(8, {4}, 5), "five");
  auto o = bench::PairedOptions().batch_sizes({});
  EXPECT_THAT(error_of([&] { bench::compare_paired(a, five, data, o); }),
              ::testing::HasSubstr("compare: model B returns [50, 5] for data with 3 classes"));
  auto partly = data.with_label_budget(20);
  EXPECT_THROW(bench::compare_paired(a, a, partly, o), Error);
}

}  // namespace kdistill::test
