#include "kdistill/train/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kdistill/core/error.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

// The message of the error parse_config gives for `yaml` (or error_of's marker when it gives none).
std::string config_error(const std::string& yaml) {
  return error_of([&] { parse_config(yaml, "run.yaml", "/base"); });
}

const char* kFull = R"(
seed: 7
device: cpu
threads: 2
data: {format: hdf5, train: data/train.h5, test: /abs/test.h5, features: feats, labels: labs, labeled: 100}
teacher: {cache: logits.h5}
student: {torchscript: student.pt}
loss: {kind: kd, temperature: 2.5, alpha: 0.7}
train: {epochs: 3, batch_size: 64, optimizer: adamw, lr: 0.001, momentum: 0.5, nesterov: false,
        weight_decay: 1.0e-4, schedule: step, warmup_steps: 5, step_size: 10, gamma: 0.5, grad_clip_norm: 1.0,
        checkpoint_every: 50, log_every: 10, max_steps: 0, eval_batch_size: 500, on_nonfinite: skip}
distributed: {backend: gloo, timeout_s: 45, bucket_mb: 0.5}
output: runs/x
)";

}  // namespace

TEST(Config, ParsesEveryKeyAndResolvesRelativePaths) {
  auto c = parse_config(kFull, "run.yaml", "/base");
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.threads, 2);
  EXPECT_EQ(c.data.format, "hdf5");
  EXPECT_EQ(c.data.train, "/base/data/train.h5");
  EXPECT_EQ(c.data.test, "/abs/test.h5");
  EXPECT_EQ(c.data.features, "feats");
  EXPECT_EQ(c.data.labeled, 100);
  EXPECT_EQ(c.teacher_cache, "/base/logits.h5");
  EXPECT_TRUE(c.teacher_torchscript.empty());
  EXPECT_EQ(c.student_torchscript, "/base/student.pt");
  EXPECT_EQ(c.train.loss().temperature(), 2.5);
  EXPECT_EQ(c.train.loss().alpha(), 0.7);
  EXPECT_EQ(c.train.optimizer(), "adamw");
  EXPECT_EQ(c.train.lr(), 0.001);
  EXPECT_EQ(c.train.schedule(), "step");
  EXPECT_EQ(c.train.step_size(), 10);
  EXPECT_EQ(c.train.on_nonfinite(), "skip");
  EXPECT_EQ(c.train.eval_batch_size(), 500);
  EXPECT_EQ(c.train.seed(), 7u);  // the top-level seed reaches the trainer
  EXPECT_EQ(c.output, "/base/runs/x");
  EXPECT_EQ(c.distributed.backend(), "gloo");
  EXPECT_EQ(c.distributed.timeout_s(), 45);
  EXPECT_EQ(c.train.bucket_mb(), 0.5);
  auto back = parse_config(to_yaml(c), "again.yaml", "/elsewhere");
  EXPECT_EQ(back.distributed.backend(), "gloo");
  EXPECT_EQ(back.distributed.timeout_s(), 45);
  EXPECT_EQ(back.train.bucket_mb(), 0.5);
}

TEST(Config, DefaultsAndTheNestedHdf5Form) {
  auto c = parse_config("student: {torchscript: s.pt}\noutput: out\n", "run.yaml", "/b");
  EXPECT_EQ(c.data.format, "idx");
  EXPECT_EQ(c.data.path, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(c.train.epochs(), 10);
  EXPECT_EQ(c.train.loss().temperature(), 4.0);
  auto n = parse_config("data: {format: hdf5, hdf5: {train: t.h5, features: f}}\nstudent: {torchscript: s.pt}\noutput: o\n",
                        "run.yaml", "/b");
  EXPECT_EQ(n.data.train, "/b/t.h5");
  EXPECT_EQ(n.data.features, "f");
}

TEST(Config, ErrorsNameTheKeyPath) {
  const std::string base = "student: {torchscript: s.pt}\noutput: o\n";
  EXPECT_EQ(config_error(base + "train: {lr: fast}\n"), "run.yaml: train.lr: expected a number, got \"fast\"");
  EXPECT_THAT(config_error(base + "train: {lrr: 0.1}\n"), HasSubstr("run.yaml: train.lrr: unknown key"));
  EXPECT_THAT(config_error(base + "colour: red\n"), HasSubstr("run.yaml: colour: unknown key"));
  EXPECT_EQ(config_error(base + "train: {epochs: 2.5}\n"), "run.yaml: train.epochs: expected an integer, got \"2.5\"");
  EXPECT_EQ(config_error(base + "train: {nesterov: maybe}\n"), "run.yaml: train.nesterov: expected true or false, got \"maybe\"");
  EXPECT_EQ(config_error(base + "train: [1, 2]\n"), "run.yaml: train: expected a mapping, got a list");
  EXPECT_EQ(config_error(base + "loss: {temperature: {a: 1}}\n"),
            "run.yaml: loss.temperature.a: unknown key (expected one of: end, epochs, gamma, schedule, start, step_size, steps)");
  EXPECT_THAT(config_error(base + "data: {format: csv}\n"),
              HasSubstr("data.format: expected idx, hdf5, text or tokens, got \"csv\""));
  EXPECT_THAT(config_error(base + "data: {format: hdf5}\n"), HasSubstr("data.train: required"));
  EXPECT_THAT(config_error(base + "teacher: {cache: a.h5, torchscript: t.pt}\n"),
              HasSubstr("either torchscript or cache"));
  EXPECT_THAT(config_error(base + "loss: {kind: fitnet}\n"), HasSubstr("loss.kind: expected kd"));
  EXPECT_THAT(config_error("output: o\n"), HasSubstr("student: required"));
  EXPECT_THAT(config_error("student: {torchscript: s.pt}\n"), HasSubstr("output: required"));
  EXPECT_THAT(config_error("train: {lr: [\n"), HasSubstr("not valid YAML"));
  EXPECT_THAT(config_error("- a\n- b\n"), HasSubstr("the document: expected a mapping"));
}

// Found by fuzz_config (tests/fuzz/regressions/config/): a key that is not a name made yaml-cpp
// throw past parse_config. The rest were found next to it: "seed: -1" wrapped around to 2^64 - 1
// (and the written config.yaml no longer parsed), and threads beyond int's range were truncated.
TEST(Config, KeysSeedsAndThreadsOutsideTheirDomainAreErrors) {
  const std::string base = "student: {torchscript: s.pt}\noutput: o\n";
  EXPECT_EQ(config_error("? [a, b]\n: 1\n" + base), "run.yaml: the document: every key must be a name, got a list as a key");
  EXPECT_EQ(config_error(base + "train: {? {a: 1} : 1}\n"), "run.yaml: train: every key must be a name, got a mapping as a key");
  EXPECT_EQ(config_error(base + "seed: -1\n"),
            "run.yaml: seed: expected an integer from 0 to 18446744073709551615, got \"-1\"");
  EXPECT_THAT(config_error(base + "seed: 18446744073709551616\n"), HasSubstr("seed: expected an integer"));
  EXPECT_EQ(config_error(base + "threads: 4294967297\n"), "run.yaml: threads: must be from 0 (all cores) to 4096, got 4294967297");
  EXPECT_THAT(config_error(base + "threads: -2\n"), HasSubstr("threads: must be from 0"));
  // The largest seed is accepted and survives to_yaml.
  auto c = parse_config(base + "seed: 18446744073709551615\n", "run.yaml", "/b");
  EXPECT_EQ(c.seed, 18446744073709551615u);
  EXPECT_EQ(parse_config(to_yaml(c), "again", "/b").seed, 18446744073709551615u);
}

// Found by fuzz_config: a path ending in a carriage return came back from to_yaml without it.
TEST(Config, StringsWithControlCharactersRoundTrip) {
  auto c = parse_config("student: {torchscript: \"s.pt\\r\"}\noutput: \"o\\tx\"\n", "run.yaml", "/b");
  EXPECT_EQ(c.student_torchscript, "/b/s.pt\r");
  auto again = parse_config(to_yaml(c), "again", "/b");
  EXPECT_EQ(again.student_torchscript, "/b/s.pt\r");
  EXPECT_EQ(again.output, "/b/o\tx");
}

TEST(Config, ToYamlRoundTrips) {
  auto c = parse_config(kFull, "run.yaml", "/base");
  auto again = parse_config(to_yaml(c), "resolved", "/elsewhere");
  EXPECT_EQ(to_yaml(again), to_yaml(c));
  EXPECT_EQ(again.data.train, "/base/data/train.h5");  // absolute after resolution
  EXPECT_EQ(again.train.grad_clip_norm(), 1.0);
  EXPECT_EQ(again.train.loss().alpha(), 0.7);
}

TEST(Config, LossListOfWeightedObjectives) {
  const std::string base = "student: {torchscript: s.pt}\noutput: o\n";
  auto c = parse_config(base + "loss: [{kind: kd, weight: 0.9, temperature: 4}, {kind: ce, weight: 0.1},\n"
                               "       {kind: hint, name: h2, student: layer2, teacher: layer3, adapter: linear}]\n",
                        "run.yaml", "/b");
  ASSERT_EQ(c.objectives.size(), 3u);
  EXPECT_EQ(c.objectives[0].kind, "kd");
  EXPECT_EQ(c.objectives[0].name, "kd");
  EXPECT_EQ(c.objectives[0].weight.initial(), 0.9);
  EXPECT_EQ(c.objectives[0].alpha, 1.0);  // the list form's KD is the soft term alone
  EXPECT_EQ(c.objectives[1].weight.initial(), 0.1);
  EXPECT_EQ(c.objectives[2].name, "h2");
  EXPECT_EQ(c.objectives[2].student, "layer2");
  EXPECT_EQ(c.objectives[2].adapter, "linear");
  auto again = parse_config(to_yaml(c), "again", "/b");
  EXPECT_EQ(to_yaml(again), to_yaml(c));
  ASSERT_EQ(again.objectives.size(), 3u);
  EXPECT_EQ(again.objectives[2].teacher, "layer3");
  // The mapping form with another kind is a one-entry list.
  auto one = parse_config(base + "loss: {kind: mse}\n", "run.yaml", "/b");
  ASSERT_EQ(one.objectives.size(), 1u);
  EXPECT_EQ(one.objectives[0].kind, "mse");
  // The mapping form of KD keeps its meaning: Hinton's loss with alpha 0.9 unless given.
  EXPECT_TRUE(parse_config(base + "loss: {kind: kd, temperature: 2}\n", "run.yaml", "/b").objectives.empty());
}

TEST(Config, LossListErrorsNameTheKeyPath) {
  const std::string base = "student: {torchscript: s.pt}\noutput: o\n";
  EXPECT_EQ(config_error(base + "loss: [{kind: kd}, {kind: fitnet}]\n"),
            "run.yaml: loss[1].kind: expected kd, ce, soft_ce, mse, hint, at, dkd, reverse_kl, jsd, tvd, skew_kl or skew_reverse_kl, got \"fitnet\"");
  EXPECT_THAT(config_error(base + "loss: [{kind: ce, temperature: 2}]\n"),
              HasSubstr("run.yaml: loss[0].temperature: unknown key"));
  EXPECT_THAT(config_error(base + "loss: [{weight: 2}]\n"), HasSubstr("run.yaml: loss[0].kind: required"));
  EXPECT_THAT(config_error(base + "loss: [{kind: ce}, {kind: ce}]\n"), HasSubstr("loss[1].name: \"ce\" is used twice"));
  EXPECT_THAT(config_error(base + "loss: [{kind: hint, student: a}]\n"),
              HasSubstr("loss[0].teacher: required for a hint"));
  EXPECT_THAT(config_error(base + "loss: [{kind: kd, weight: fast}]\n"),
              HasSubstr("loss[0].weight: expected a number"));
  EXPECT_THAT(config_error(base + "loss: []\n"), HasSubstr("loss: the list is empty"));
  EXPECT_THAT(config_error(base + "loss: [3]\n"), HasSubstr("loss[0]: expected a mapping, got a scalar"));
  EXPECT_THAT(config_error(base + "loss: [{kind: hint, student: a, teacher: b, adapter: mlp}]\n"),
              HasSubstr("loss[0].adapter: expected conv1x1 or linear"));
}

TEST(Config, MethodKindsSchedulesGenerationsAndValidation) {
  const std::string base = "student: {torchscript: s.pt}\noutput: o\n";
  auto c = parse_config(base + "generations: 3\ndata: {validation: 1000}\n"
                               "loss: [{kind: dkd, weight: {schedule: linear, start: 0, end: 1, epochs: 20}}, {kind: ce},\n"
                               "  {kind: jsd, beta: 0.9}, {kind: skew_kl, skew: 0.2, temperature: {schedule: cosine, start: 4, end: 1}},\n"
                               "  {kind: at, student: [a, b], teacher: [c, d]}, {kind: tvd}, {kind: reverse_kl, temperature: 2},\n"
                               "  {kind: skew_reverse_kl, weight: {schedule: step, start: 1, step_size: 100, gamma: 0.5}}]\n",
                        "run.yaml", "/b");
  EXPECT_EQ(c.generations, 3);
  EXPECT_EQ(c.data.validation, 1000);
  ASSERT_EQ(c.objectives.size(), 8u);
  const auto& dkd = c.objectives[0];
  EXPECT_EQ(dkd.alpha, 1.0);  // mdistiller's defaults
  EXPECT_EQ(dkd.beta, 8.0);
  EXPECT_EQ(dkd.temperature.initial(), 4.0);
  EXPECT_EQ(dkd.weight.options().kind(), "linear");
  EXPECT_EQ(dkd.weight.options().span_epochs(), 20);
  EXPECT_EQ(c.objectives[2].beta, 0.9);
  EXPECT_EQ(c.objectives[2].temperature.initial(), 1.0);  // the divergences default to T = 1
  EXPECT_EQ(c.objectives[3].skew, 0.2);
  EXPECT_EQ(c.objectives[3].temperature.describe(), "cosine(4 -> 1 over the run)");
  EXPECT_EQ(c.objectives[4].pairs, (std::vector<std::pair<std::string, std::string>>{{"a", "c"}, {"b", "d"}}));
  EXPECT_EQ(c.objectives[6].temperature.initial(), 2.0);
  EXPECT_EQ(c.objectives[7].weight.describe(), "step(1 x 0.5 every 100 steps)");
  auto again = parse_config(to_yaml(c), "again", "/b");
  EXPECT_EQ(to_yaml(again), to_yaml(c));
  EXPECT_EQ(again.objectives[4].pairs, c.objectives[4].pairs);
  // Every option comes back, not only the same text (a field to_yaml left out would come back as
  // its default on both sides).
  EXPECT_EQ(again.objectives[0].beta, 8.0);
  EXPECT_EQ(again.objectives[2].beta, 0.9);
  EXPECT_EQ(again.objectives[3].skew, 0.2);
  EXPECT_EQ(again.objectives[3].temperature.describe(), "cosine(4 -> 1 over the run)");
  EXPECT_EQ(again.objectives[6].temperature.initial(), 2.0);
  EXPECT_EQ(again.objectives[7].weight.describe(), "step(1 x 0.5 every 100 steps)");
  EXPECT_EQ(again.generations, 3);
  EXPECT_EQ(again.data.validation, 1000);
  EXPECT_EQ(again.objectives[0].weight.describe(), "linear(0 -> 1 over 20 epochs)");
  // A one-pair attention transfer may name its taps as strings.
  auto one = parse_config(base + "loss: {kind: at, student: x, teacher: y, p: 4}\n", "run.yaml", "/b");
  EXPECT_EQ(one.objectives.at(0).pairs.size(), 1u);
  EXPECT_EQ(one.objectives.at(0).p, 4.0);
  // The mapping form of KD with an annealed temperature becomes one list entry (Hinton's alpha kept).
  auto anneal = parse_config(base + "loss: {kind: kd, temperature: {schedule: linear, start: 8, end: 2}}\n", "run.yaml", "/b");
  ASSERT_EQ(anneal.objectives.size(), 1u);
  EXPECT_EQ(anneal.objectives[0].alpha, 0.9);
}

TEST(Config, MethodErrorsNameTheKeyPath) {
  const std::string base = "student: {torchscript: s.pt}\noutput: o\n";
  EXPECT_EQ(config_error(base + "loss: [{kind: jsd, beta: 1}]\n"), "run.yaml: loss[0].beta must be in (0, 1), got 1");
  EXPECT_EQ(config_error(base + "loss: [{kind: skew_kl, skew: 1.5}]\n"), "run.yaml: loss[0].skew must be in [0, 1), got 1.5");
  EXPECT_EQ(config_error(base + "loss: [{kind: dkd, beta: -1}]\n"), "run.yaml: loss[0].beta must be >= 0, got -1");
  EXPECT_EQ(config_error(base + "loss: [{kind: at, student: [a, b], teacher: c}]\n"),
            "run.yaml: loss[0]: student and teacher must list as many taps (2 and 1)");
  EXPECT_EQ(config_error(base + "loss: [{kind: at, student: a}]\n"),
            "run.yaml: loss[0].teacher: required for attention transfer (the teacher feature's submodule path)");
  EXPECT_EQ(config_error(base + "loss: [{kind: ce, weight: {schedule: exponential}}]\n"),
            "run.yaml: loss[0].weight: kind must be constant, linear, cosine or step, got \"exponential\"");
  EXPECT_EQ(config_error(base + "loss: [{kind: ce, weight: {start: 1}}]\n"),
            "run.yaml: loss[0].weight.schedule: required in a schedule (constant, linear, cosine or step)");
  EXPECT_EQ(config_error(base + "loss: [{kind: kd, temperature: {schedule: linear, start: 4, end: 0}}]\n"),
            "run.yaml: loss[0].temperature must be > 0, got linear(4 -> 0 over the run)");
  EXPECT_EQ(config_error(base + "loss: [{kind: tvd, beta: 0.5}]\n").substr(0, 36), "run.yaml: loss[0].beta: unknown key ");
  EXPECT_EQ(config_error(base + "generations: 0\n"), "run.yaml: generations: must be from 1 to 100, got 0");
  EXPECT_EQ(config_error(base + "data: {validation: -5}\n"), "run.yaml: data.validation: must be >= 0, got -5");
}

TEST(Config, Precision) {
  const std::string base = "student: {torchscript: s.pt}\noutput: o\n";
  auto c = parse_config(base + "precision: {teacher: bf16}\n", "run.yaml", "/b");
  EXPECT_EQ(c.train.precision().teacher(), Precision::kBFloat16);
  EXPECT_EQ(c.train.precision().student(), Precision::kFloat32);
  EXPECT_EQ(parse_config(to_yaml(c), "again", "/b").train.precision().teacher(), Precision::kBFloat16);
  EXPECT_EQ(config_error(base + "precision: {student: fp64}\n"), "run.yaml: precision.student: expected fp32 or bf16, got \"fp64\"");
  EXPECT_THAT(config_error(base + "precision: {student: fp16}\n"),
              HasSubstr("fp16 is not supported: it needs dynamic loss scaling"));
  EXPECT_THAT(config_error(base + "precision: {teacher: bf16, optimizer: bf16}\n"),
              HasSubstr("precision.optimizer: unknown key"));
}

TEST(Config, TeacherEnsemble) {
  const std::string base = "student: {torchscript: s.pt}\noutput: o\n";
  auto c = parse_config(base + "teacher: {ensemble: [{torchscript: a.pt, weight: 2}, {cache: b.h5}]}\n", "run.yaml",
                        "/b");
  ASSERT_EQ(c.teacher_ensemble.size(), 2u);
  EXPECT_EQ(c.teacher_ensemble[0].torchscript, "/b/a.pt");
  EXPECT_EQ(c.teacher_ensemble[0].weight, 2.0);
  EXPECT_EQ(c.teacher_ensemble[1].cache, "/b/b.h5");
  auto again = parse_config(to_yaml(c), "again", "/b");
  EXPECT_EQ(to_yaml(again), to_yaml(c));
  EXPECT_THAT(config_error(base + "teacher: {ensemble: [{torchscript: a.pt, cache: b.h5}]}\n"),
              HasSubstr("teacher.ensemble[0]: give either torchscript or cache"));
  EXPECT_THAT(config_error(base + "teacher: {ensemble: [{cache: b.h5, weight: 0}]}\n"),
              HasSubstr("teacher.ensemble[0].weight: must be > 0"));
  EXPECT_THAT(config_error(base + "teacher: {ensemble: []}\n"),
              HasSubstr("teacher.ensemble: expected a non-empty list"));
}

// `stream: true` reads a cache block by block; it survives to_yaml, and is refused for a live teacher.
TEST(Config, StreamedCache) {
  const std::string base = "student: {torchscript: s.pt}\noutput: o\n";
  auto c = parse_config(base + "teacher: {cache: big.h5, stream: true}\n", "run.yaml", "/b");
  EXPECT_EQ(c.teacher_cache, "/b/big.h5");
  EXPECT_TRUE(c.teacher_stream);
  EXPECT_TRUE(parse_config(to_yaml(c), "again", "/b").teacher_stream);
  EXPECT_FALSE(parse_config(base + "teacher: {cache: big.h5}\n", "run.yaml", "/b").teacher_stream);
  auto e = parse_config(base + "teacher: {ensemble: [{cache: b.h5, stream: true}, {torchscript: a.pt}]}\n", "run.yaml",
                        "/b");
  EXPECT_TRUE(e.teacher_ensemble[0].stream);
  EXPECT_FALSE(e.teacher_ensemble[1].stream);
  EXPECT_EQ(to_yaml(parse_config(to_yaml(e), "again", "/b")), to_yaml(e));
  EXPECT_THAT(config_error(base + "teacher: {torchscript: t.pt, stream: true}\n"),
              HasSubstr("teacher.stream: is for a cache"));
  EXPECT_THAT(config_error(base + "teacher: {ensemble: [{torchscript: a.pt, stream: true}]}\n"),
              HasSubstr("teacher.ensemble[0].stream: is for a cache"));
  EXPECT_THAT(config_error(base + "teacher: {cache: big.h5, stream: often}\n"), HasSubstr("teacher.stream"));
}

}  // namespace kdistill::test
