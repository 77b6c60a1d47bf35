// `kdistill demo --task lm` end to end on a small text directory: the report's language-model
// fields, and a saved teacher reused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cli/cli_support.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/models/sequence.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

std::string text_directory(const std::string& dir) {
  std::string text;
  for (int i = 0; i < 60; ++i) text += "abcabd abcabe " + std::to_string(i % 7) + "\n";
  for (const char* name : {"kids", "law", "train_a", "train_b"}) std::ofstream(dir + "/" + name) << text;
  std::ofstream(dir + "/train_a.dat") << std::string(64, '\0');  // fortune's index files are skipped
  return dir;
}

}  // namespace

TEST(CliLm, DemoTrainsTheThreeModelsReportsBitsPerByteAndReusesItsTeacher) {
  TempDir dir;
  const auto text = text_directory(dir.path());
  const auto args = "demo --task lm --data " + text +
                    " --teacher transformer:16,1,2 --student gru:8 --length 16 --epochs-teacher 2"
                    " --epochs-student 1 --batch-size 8 --new-tokens 4 --teacher-weights " + (dir / "teacher.pt");
  auto o = cli(args + " --report " + (dir / "report.json"));
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("| model | arch | params | bits/byte"));
  EXPECT_THAT(o.out, HasSubstr("held-out text: kids, law"));
  auto j = nlohmann::json::parse(io::read_file(dir / "report.json"));
  EXPECT_EQ(j["dataset"]["name"], "fortunes");
  for (const char* m : {"teacher", "student_scratch", "student_kd"}) {
    const auto& e = j["models"][m];
    EXPECT_GT(e["bits_per_byte"].get<double>(), 0.0) << m;
    EXPECT_LT(e["bits_per_byte"].get<double>(), 8.0) << m << ": worse than a uniform byte";
    EXPECT_GT(e["tokens_per_s"].get<double>(), 0.0) << m;
    EXPECT_NEAR(e["perplexity"].get<double>(), std::exp2(e["bits_per_byte"].get<double>()), 1e-9) << m;
    EXPECT_TRUE(e["generation"].contains("1") && e["generation"].contains("8")) << m;
  }
  EXPECT_EQ(j["models"]["teacher"]["generation"]["1"]["method"], "recompute");
  EXPECT_EQ(j["models"]["student_kd"]["generation"]["1"]["method"], "incremental");
  EXPECT_EQ(j["models"]["student_kd"]["arch"], "gru:8,1");
  EXPECT_TRUE(j["models"]["student_kd"].contains("agreement"));
  EXPECT_FALSE(j["models"]["teacher"].contains("agreement"));

  // The saved teacher is reused: nothing trains it again, and it scores the same.
  ASSERT_TRUE(std::filesystem::exists(dir / "teacher.pt"));
  auto again = cli(args + " --divergence reverse_kl --report " + (dir / "again.json"));
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("weights from"));
  EXPECT_THAT(again.out, HasSubstr("Distillation (reverse_kl) vs text alone"));
  auto k = nlohmann::json::parse(io::read_file(dir / "again.json"));
  EXPECT_EQ(k["models"]["teacher"]["bits_per_byte"], j["models"]["teacher"]["bits_per_byte"]);

  // Distilled from a cache of the same (reloaded) teacher: dense, read whole, lands where the live
  // teacher does; top-4 records its bytes per token.
  // (Reports and caches go outside the text directory, which the demo reads whole.)
  TempDir out;
  auto live = cli(args + " --report " + (out / "live.json"));
  ASSERT_EQ(live.status, 0) << live.err;
  auto l = nlohmann::json::parse(io::read_file(out / "live.json"));
  std::filesystem::create_directory(out / "cache_tmp");  // where the caches go, and must not stay
  auto cached = [&](const std::string& extra) {
    return run("TMPDIR=" + (out / "cache_tmp") + " " + KDISTILL_CLI + " " + args + extra);
  };
  auto dense = cached(" --teacher-cache dense --report " + (out / "dense.json"));
  ASSERT_EQ(dense.status, 0) << dense.err;
  EXPECT_THAT(dense.err, HasSubstr("teacher cache dense: "));
  auto d = nlohmann::json::parse(io::read_file(out / "dense.json"));
  EXPECT_NEAR(d["models"]["student_kd"]["bits_per_byte"].get<double>(),
              l["models"]["student_kd"]["bits_per_byte"].get<double>(), 1e-3);
  EXPECT_EQ(d["teacher_cache"]["streamed"], false);
  auto top = cached(" --teacher-cache topk:4 --report " + (out / "top4.json"));
  ASSERT_EQ(top.status, 0) << top.err;
  auto t = nlohmann::json::parse(io::read_file(out / "top4.json"));
  EXPECT_EQ(t["teacher_cache"]["spec"], "topk:4");
  EXPECT_GT(t["teacher_cache"]["bytes_per_token"].get<double>(), 0.0);
  EXPECT_LT(t["teacher_cache"]["bytes_per_token"].get<double>(), 4 * 4 + 4 * 2 + 4);  // at most k indices, values, tail
  EXPECT_LT(t["models"]["student_kd"]["bits_per_byte"].get<double>(), 8.0);
  EXPECT_TRUE(std::filesystem::is_empty(out / "cache_tmp"));
}

TEST(CliLm, BenchMeasuresGenerationOfTwoLanguageModels) {
  TempDir dir;
  torch::manual_seed(0);
  transformer_lm(TransformerLMOptions(20, 8).dim(8).layers(1).heads(2)).save(dir / "t.pt");
  gru_lm(GRULMOptions(20).hidden(4)).save(dir / "s.pt");
  const auto models = "bench --teacher " + (dir / "t.pt") + " --student " + (dir / "s.pt") + " --generate 20";
  auto o = cli(models + " --batch 1,2 --prompt 3 --new-tokens 10 --runs 1 --json " + (dir / "g.json"));
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("| teacher | "));
  auto j = nlohmann::json::parse(io::read_file(dir / "g.json"));
  EXPECT_EQ(j["models"]["teacher"]["generation"]["2"]["method"], "recompute");
  EXPECT_EQ(j["models"]["student"]["generation"]["1"]["method"], "incremental");
  EXPECT_EQ(j["models"]["student"]["generation"]["2"]["new_tokens"], 10);
  EXPECT_GT(j["models"]["student"]["tokens_per_s"].get<double>(), 0.0);

  auto bad = cli(models + " --runtimes eigen");
  EXPECT_EQ(bad.status, 1);
  expect_one_error_line(bad, "--generate measures the TorchScript models as loaded, in fp32");
}

}  // namespace kdistill::test
