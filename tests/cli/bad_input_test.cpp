// The bad-input catalogue: every row is something a user can hand the kdistill command. Each must
// end with exit status 1 or 2 and one "error:" line naming the problem: never a crash, an abort,
// an uncaught exception or a hang, and never a stray temporary file or a changed earlier output.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <cctype>
#include <functional>

#include <torch/torch.h>

#include "fixtures/fixtures.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/data/idx.h"
#include "kdistill/models/model.h"
#include "kdistill/teachers/cache.h"
#include "kdistill/io/atomic_file.h"
#include "support.h"

namespace kdistill::test {
namespace {

namespace fs = std::filesystem;

struct Case {
  const char* name;
  bool needs_fixtures;
  std::function<std::string(const std::string& dir, const std::string& fx)> setup;  // returns the arguments
  int status;
  const char* needle;
  const char* env = "";  ///< variables set for the command ("WORLD_SIZE=2 RANK=1")
};

void write(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// A valid tiny MNIST-family directory; `mutate` may then break one file.
std::string mnist(const std::string& dir, int64_t n = 200) {
  const auto d = dir + "/mnist";
  fs::create_directories(d);
  torch::manual_seed(0);
  for (const char* split : {"train", "t10k"}) {
    auto labels = torch::randint(0, 3, {n}, torch::kLong);
    auto images = (torch::rand({n, 28, 28}) * 60 + labels.view({n, 1, 1}) * 80).to(torch::kUInt8);
    data::write_idx(d + "/" + split + "-images-idx3-ubyte.gz", images);
    data::write_idx(d + "/" + split + "-labels-idx1-ubyte.gz", labels.to(torch::kUInt8));
  }
  return d;
}

// A directory of text for `demo --task lm`: the held-out files and one training file.
std::string text_dir(const std::string& dir) {
  const auto d = dir + "/text";
  fs::create_directories(d);
  std::string text;
  for (int i = 0; i < 40; ++i) text += "The quick brown fox jumps over the lazy dog. ";
  for (const char* name : {"kids", "law", "other"}) write(d + "/" + name, text);
  return d;
}

// A configuration for the Python fixtures with one line replaced or added.
std::string config(const std::string& dir, const std::string& fx, const std::string& extra,
                   const std::string& student = "student.pt", const std::string& train = "") {
  const auto path = dir + "/run.yaml";
  write(path, "threads: 1\ndata: {format: hdf5, train: " + (train.empty() ? fx + "/train.h5" : train) + ", test: " + fx +
                  "/test.h5}\nteacher: {torchscript: " + fx + "/teacher.pt}\nstudent: {torchscript: " + fx + "/" +
                  student + "}\ntrain: {epochs: 1, batch_size: 32}\noutput: " + dir + "/out\n" + extra);
  return "train --config " + path;
}

// The fixture configuration with one piece of text replaced.
std::string edited(const std::string& dir, const std::string& fx, const std::string& from, const std::string& to) {
  auto args = config(dir, fx, "");
  auto text = io::read_file(dir + "/run.yaml");
  text.replace(text.find(from), from.size(), to);
  write(dir + "/run.yaml", text);
  return args;
}

// The fixture teacher's cache of the fixture training set, written at `path`.
std::string fixture_cache(const std::string& fx, const std::string& path, const CacheOptions& options) {
  ModelTeacher teacher(Model::load_torchscript(fx + "/teacher.pt"));
  cache_teacher(teacher, data::load_hdf5(fx + "/train.h5", "x", "y"), path, options);
  return path;
}

std::string yaml(const std::string& dir, const std::string& text) {
  write(dir + "/c.yaml", text);
  return "train --config " + dir + "/c.yaml";
}

std::string h5(const std::string& dir, const std::string& python_body) {
  auto r = python("import h5py, numpy as np\nf = h5py.File('" + dir + "/d.h5', 'w')\n" + python_body + "f.close()\n");
  return dir + "/d.h5";
}

const std::vector<Case>& catalogue() {
  static const std::vector<Case> cases = {
      {"no command", false, [](auto&, auto&) { return ""; }, 2, "no command given"},
      {"unknown command", false, [](auto&, auto&) { return "distil"; }, 2, "distil"},
      {"unknown flag", false, [](auto&, auto&) { return "demo --colour red"; }, 2, "--colour"},
      {"negative epochs", false, [](auto&, auto&) { return "demo --epochs-teacher -1"; }, 2, "--epochs-teacher"},
      {"batch size 0", false, [](auto&, auto&) { return "demo --batch-size 0"; }, 2, "--batch-size"},
      {"temperature 0", false, [](auto&, auto&) { return "demo --temperature 0"; }, 1, "temperature must be > 0, got 0"},
      {"alpha below 0", false, [](auto&, auto&) { return "demo --alpha -0.1"; }, 1, "alpha must be in [0, 1], got -0.1"},
      {"missing data directory", false, [](auto& d, auto&) { return "demo --data " + d + "/nothing"; }, 1,
       "train-images-idx3-ubyte.gz"},
      {"empty IDX file", false, [](auto& d, auto&) { auto m = mnist(d); write(m + "/train-labels-idx1-ubyte.gz", "");
                                                      return "demo --data " + m; }, 1, "truncated"},
      {"truncated .gz", false, [](auto& d, auto&) { auto m = mnist(d); auto p = m + "/train-images-idx3-ubyte.gz";
                                                     auto b = io::read_file(p); write(p, b.substr(0, b.size() / 2));
                                                     return "demo --data " + m; }, 1, "train-images-idx3-ubyte.gz"},
      {"wrong IDX magic", false, [](auto& d, auto&) { auto m = mnist(d);
                                                       write(m + "/t10k-labels-idx1-ubyte.gz", std::string("\0\0\x0d\x01\0\0\0\x01\x05", 9));
                                                       return "demo --data " + m; }, 1, "not an unsigned-byte IDX file"},
      {"image/label count mismatch", false, [](auto& d, auto&) { auto m = mnist(d);
                                                                  data::write_idx(m + "/t10k-labels-idx1-ubyte.gz", torch::zeros({7}, torch::kUInt8));
                                                                  return "demo --data " + m; }, 1, "7 labels"},
      {"test label out of range", false, [](auto& d, auto&) { auto m = mnist(d);
                                                               data::write_idx(m + "/t10k-labels-idx1-ubyte.gz", torch::full({200}, 7, torch::kUInt8));
                                                               return "demo --data " + m; }, 1, "label 7 is outside [0, 3)"},
      {"cuda without a GPU", false, [](auto&, auto&) { return "demo --device cuda"; }, 1, "no CUDA device"},
      {"demo in fp16", false, [](auto&, auto&) { return "demo --precision fp16"; }, 1,
       "--precision: fp16 is not supported: it needs dynamic loss scaling"},
      {"cache-teacher in fp64", true, [](auto& d, auto& fx) {
         return "cache-teacher --teacher " + fx + "/teacher.pt --data hdf5:" + fx + "/train.h5 --out " + d + "/l.h5 --precision fp64"; },
       1, "--precision: expected fp32 or bf16, got \"fp64\""},
      {"bench bf16 with the Eigen runtime", true, [](auto& d, auto& fx) {
         return "bench --teacher " + fx + "/teacher.pt --student " + fx + "/student.pt --input-shape 8 --batch 1 --runtimes eigen --precision bf16"; },
       1, "--precision bf16 measures LibTorch models as they are"},
      {"precision fp16 in config", true, [](auto& d, auto& fx) { return config(d, fx, "precision: {teacher: fp16}\n"); }, 1,
       "precision.teacher: fp16 is not supported"},
      {"cuda:7", false, [](auto&, auto&) { return "demo --device cuda:7"; }, 1, "cuda:7"},
      {"unknown device", false, [](auto&, auto&) { return "demo --device tpu"; }, 1, "expected cpu, cuda or cuda:N, got \"tpu\""},
      {"unknown student spec", false, [](auto& d, auto&) { return "demo --data " + mnist(d) + " --student rnn:8"; }, 1, "rnn:8"},
      {"batch larger than the data", false, [](auto& d, auto&) { return "demo --data " + mnist(d) + " --batch-size 500"; }, 1,
       "batch_size 500 is larger than the training set"},
      {"report directory missing", false, [](auto& d, auto&) { return "demo --data " + mnist(d) + " --report " + d + "/no/r.json"; },
       1, "does not exist"},
      {"lm demo: unknown task", false, [](auto&, auto&) { return "demo --task speech"; }, 2, "--task"},
      {"lm demo: missing text directory", false, [](auto& d, auto&) { return "demo --task lm --data " + d + "/none"; },
       1, "is not a directory (install Debian's fortunes package"},
      {"lm demo: no held-out files", false, [](auto& d, auto&) { write(d + "/a", "text"); return "demo --task lm --data " + d; },
       1, "must hold the held-out files kids and law"},
      {"lm demo: an image-only option", false, [](auto&, auto&) { return "demo --task lm --labels 50"; }, 1,
       "--labels is for the image demo only"},
      {"lm demo: image spec for the teacher", false, [](auto& d, auto&) { return "demo --task lm --data " + text_dir(d) +
                                                                          " --teacher mlp:8"; },
       1, "--teacher must be a language model, transformer:DIM,LAYERS,HEADS or gru:HIDDEN[,LAYERS], got \"mlp:8\""},
      {"lm demo: a teacher cache without its count", false, [](auto& d, auto&) { return "demo --task lm --data " + text_dir(d) +
         " --teacher-cache topk"; }, 1, "--teacher-cache must be dense, topk:K or sampled:S, got \"topk\""},
      {"lm demo: sampled cache with another divergence", false, [](auto& d, auto&) { return "demo --task lm --data " +
         text_dir(d) + " --teacher-cache sampled:8 --divergence jsd"; }, 1,
       "--teacher-cache sampled:8 estimates the kl divergence only, not --divergence jsd"},
      {"image demo: a teacher cache", false, [](auto&, auto&) { return "demo --teacher-cache dense"; }, 1,
       "demo: --teacher-cache is for the language-model demo only (--task lm)"},
      {"lm demo: unknown divergence", false, [](auto& d, auto&) { return "demo --task lm --data " + text_dir(d) +
                                                                    " --divergence kl2"; },
       1, "--divergence: divergence: kind must be kl, reverse_kl, jsd, tvd, skew_kl or skew_reverse_kl, got \"kl2\""},
      {"image demo: a language-model option", false, [](auto&, auto&) { return "demo --length 64"; }, 1,
       "--length is for the language-model demo only (--task lm)"},
      {"missing config", false, [](auto& d, auto&) { return "train --config " + d + "/none.yaml"; }, 1, "none.yaml"},
      {"empty config", false, [](auto& d, auto&) { return yaml(d, ""); }, 1, "expected a mapping, got nothing"},
      {"invalid YAML", false, [](auto& d, auto&) { return yaml(d, "train: {lr: [1,\n"); }, 1, "not valid YAML"},
      {"unknown config key", false, [](auto& d, auto&) { return yaml(d, "student: {torchscript: s.pt}\noutput: o\nseeed: 1\n"); }, 1,
       "seeed: unknown key"},
      {"wrong config type", false, [](auto& d, auto&) { return yaml(d, "student: {torchscript: s.pt}\noutput: o\ntrain: {lr: fast}\n"); },
       1, "train.lr: expected a number, got \"fast\""},
      {"--nproc 0", false, [](auto&, auto&) { return "train --config x.yaml --nproc 0"; }, 2, "--nproc: must be from 1 to 64"},
      {"--nproc under a launcher", false, [](auto&, auto&) { return "train --config x.yaml --nproc 2"; }, 2,
       "WORLD_SIZE is set", "WORLD_SIZE=2"},
      {"--nproc with a bad config", false, [](auto& d, auto&) { return yaml(d, "student: {torchscript: s.pt}\noutput: o\nseeed: 1\n") +
                                                                " --nproc 2"; }, 1, "seeed: unknown key"},
      {"bad distributed backend", false, [](auto& d, auto&) { return yaml(d, "student: {torchscript: s.pt}\noutput: o\n"
                                                                        "distributed: {backend: mpi}\n"); },
       1, "distributed.backend: expected gloo or nccl, got \"mpi\""},
      {"distributed timeout 0", false, [](auto& d, auto&) { return yaml(d, "student: {torchscript: s.pt}\noutput: o\n"
                                                                      "distributed: {timeout_s: 0}\n"); },
       1, "distributed.timeout_s: must be > 0, got 0"},
      {"distributed bucket 0", false, [](auto& d, auto&) { return yaml(d, "student: {torchscript: s.pt}\noutput: o\n"
                                                                      "distributed: {bucket_mb: 0}\n"); },
       1, "distributed.bucket_mb: must be > 0, got 0"},
      {"malformed RANK", true, [](auto& d, auto& fx) { return config(d, fx, ""); }, 1,
       "RANK='two' is not an integer in [0, 1]", "WORLD_SIZE=2 RANK=two"},
      {"batch smaller than the world", true, [](auto& d, auto& fx) { return edited(d, fx, "batch_size: 32", "batch_size: 1") +
                                                                     " --nproc 2"; }, 1,
       "batch_size 1 is smaller than the 2 processes"},
      {"resume of a non-run", false, [](auto& d, auto&) { return "train --resume " + d; }, 1, "not a kdistill run directory"},
      {"batch_size 0 in config", true, [](auto& d, auto& fx) { return edited(d, fx, "batch_size: 32", "batch_size: 0"); }, 1,
       "batch_size must be >= 1, got 0"},
      {"epochs -1 in config", true, [](auto& d, auto& fx) { return edited(d, fx, "epochs: 1", "epochs: -1"); }, 1,
       "epochs must be >= 0, got -1"},
      {"alpha 2 in config", true, [](auto& d, auto& fx) { return config(d, fx, "loss: {alpha: 2}\n"); }, 1, "alpha must be in [0, 1], got 2"},
      {"temperature -1 in config", true, [](auto& d, auto& fx) { return config(d, fx, "loss: {temperature: -1}\n"); }, 1,
       "temperature must be > 0, got -1"},
      {"missing student file", true, [](auto& d, auto& fx) { return config(d, fx, "", "nothere.pt"); }, 1, "nothere.pt does not exist"},
      {"garbage TorchScript", true, [](auto& d, auto& fx) { write(d + "/bad.pt", "PK\x03\x04 garbage");
                                                           return edited(d, fx, fx + "/student.pt", d + "/bad.pt"); }, 1,
       "not a loadable TorchScript archive"},
      {"student with 5 classes", true, [](auto& d, auto& fx) { return config(d, fx, "", "student5.pt"); }, 1, "the student returns shape [2, 5]"},
      {"HDF5 without labels", true, [](auto& d, auto& fx) { return config(d, fx, "", "student.pt", h5(d, "f['x'] = np.zeros((10, 8), dtype=np.float32)\n")); },
       1, "no dataset 'y'"},
      {"truncated HDF5", true, [](auto& d, auto& fx) { auto b = io::read_file(fx + "/train.h5"); write(d + "/t.h5", b.substr(0, b.size() / 3));
                                                      return config(d, fx, "", "student.pt", d + "/t.h5"); }, 1, "t.h5"},
      {"NaN feature", true, [](auto& d, auto& fx) { return config(d, fx, "", "student.pt",
                                                      h5(d, "x = np.zeros((40, 8), dtype=np.float32); x[5, 3] = np.nan\nf['x'] = x\nf['y'] = np.arange(40, dtype=np.int64) % 3\n")); },
       1, "NaN or infinite feature in sample 5"},
      {"cache for other data", true, [](auto& d, auto& fx) { auto a = config(d, fx, "");
                                                            auto t = io::read_file(d + "/run.yaml");
                                                            t.replace(t.find("torchscript: " + fx + "/teacher.pt"), 13 + fx.size() + 11, "cache: " + fx + "/probs.h5");
                                                            t.replace(t.find(fx + "/train.h5"), fx.size() + 9, fx + "/test.h5");
                                                            write(d + "/run.yaml", t); return a; }, 1, "400 samples but the training set has 200"},
      {"output under a file", true, [](auto& d, auto& fx) { write(d + "/file", "x");
                                                           return edited(d, fx, "output: " + d + "/out", "output: " + d + "/file/out"); }, 1,
       "cannot be created"},
      {"corrupt checkpoint on resume", true, [](auto& d, auto& fx) {
         run(std::string(KDISTILL_CLI) + " " + config(d, fx, ""));
         fs::remove(d + "/out/report.json");  // as if killed before the end: a finished run is only read back
         auto p = d + "/out/checkpoints/last.pt"; auto b = io::read_file(p); b[b.size() / 2] ^= 1; write(p, b);
         return "train --resume " + d + "/out"; }, 1, "is corrupt"},
      {"eval with a wrong model", true, [](auto& d, auto& fx) { return "eval --model " + fx + "/student5.pt --data hdf5:" + fx + "/test.h5"; },
       1, "but the data set has 3 classes"},
      {"unknown objective kind in a loss list", true, [](auto& d, auto& fx) {
         return config(d, fx, "loss: [{kind: kd, weight: 0.9}, {kind: fitnet}]\n"); }, 1,
       "loss[1].kind: expected kd, ce, soft_ce, mse, hint, at, dkd, reverse_kl, jsd, tvd, skew_kl or skew_reverse_kl, got \"fitnet\""},
      {"hint on a tap the student lacks", true, [](auto& d, auto& fx) {
         return config(d, fx, "loss: [{kind: kd}, {kind: hint, student: layer9, teacher: '1', adapter: linear}]\n"); }, 1,
       "loss[1].student: 'layer9' is not a feature of the student; its features: 0, 1, 2"},
      {"hint on a cached teacher", true, [](auto& d, auto& fx) {
         auto a = config(d, fx, "loss: [{kind: kd}, {kind: hint, student: '1', teacher: '1', adapter: linear}]\n");
         auto t = io::read_file(d + "/run.yaml");
         t.replace(t.find("torchscript: " + fx + "/teacher.pt"), 13 + fx.size() + 11, "cache: " + fx + "/probs.h5");
         t.replace(t.find(fx + "/train.h5"), fx.size() + 9, fx + "/train.h5");
         write(d + "/run.yaml", t); return a; }, 1,
       "loss[1].teacher: '1' is not a feature of the teacher"},
      {"cache-teacher into a missing directory", true, [](auto& d, auto& fx) {
         return "cache-teacher --teacher " + fx + "/teacher.pt --data hdf5:" + fx + "/train.h5 --out " + d + "/no/such/dir/l.h5"; },
       1, "l.h5"},
      {"jsd with beta 1", true, [](auto& d, auto& fx) { return config(d, fx, "loss: [{kind: jsd, beta: 1}]\n"); }, 1,
       "loss[0].beta must be in (0, 1), got 1"},
      {"a weight schedule of an unknown kind", true, [](auto& d, auto& fx) {
         return config(d, fx, "loss: [{kind: dkd, weight: {schedule: exponential}}, {kind: ce}]\n"); }, 1,
       "loss[0].weight: kind must be constant, linear, cosine or step, got \"exponential\""},
      {"attention transfer on flat features", true, [](auto& d, auto& fx) {
         return config(d, fx, "loss: [{kind: at, student: '1', teacher: '1'}]\n"); }, 1,
       "loss[0]: attention transfer needs [B, C, H, W] features"},
      {"zero generations", true, [](auto& d, auto& fx) { return config(d, fx, "generations: 0\n"); }, 1,
       "generations: must be from 1 to 100, got 0"},
      {"a validation split as large as the training set", true, [](auto& d, auto& fx) {
         return edited(d, fx, "/test.h5}", "/test.h5, validation: 400}"); }, 1,
       "data.validation: 400 must be below the training set size 400"},
      {"compare without --b", false, [](auto&, auto&) { return "compare --a a.pt --data x"; }, 2, "--b is required"},
      {"compare with an unsure threshold above 1", false, [](auto&, auto&) {
         return "compare --a a.pt --b b.pt --data x --unsure-below 2"; }, 2, "--unsure-below"},
      {"compare with a missing model", true, [](auto& d, auto& fx) {
         return "compare --a " + d + "/none.pt --b " + fx + "/student.pt --data hdf5:" + fx + "/test.h5"; }, 1, "none.pt"},
      {"compare with a model of other classes", true, [](auto& d, auto& fx) {
         return "compare --a " + fx + "/student.pt --b " + fx + "/student5.pt --data hdf5:" + fx + "/test.h5 --no-latency"; },
       1, "compare: model B returns [200, 5] for data with 3 classes"},
      {"compare with a bad batch list", true, [](auto& d, auto& fx) {
         return "compare --a " + fx + "/student.pt --b " + fx + "/teacher.pt --data hdf5:" + fx + "/test.h5 --batch 1,x"; },
       1, "--batch"},
      {"cache-teacher topk without --top-k", true, [](auto& d, auto& fx) {
         return "cache-teacher --teacher " + fx + "/teacher.pt --data hdf5:" + fx + "/train.h5 --out " + d + "/l.h5 --format topk"; },
       1, "--format topk needs --top-k K"},
      {"cache-teacher in an unknown format", true, [](auto& d, auto& fx) {
         return "cache-teacher --teacher " + fx + "/teacher.pt --data hdf5:" + fx + "/train.h5 --out " + d + "/l.h5 --format sparse"; },
       1, "--format: expected dense, topk or sampled, got \"sparse\""},
      {"cache-teacher sampled without --samples", true, [](auto& d, auto& fx) {
         return "cache-teacher --teacher " + fx + "/teacher.pt --data hdf5:" + fx + "/train.h5 --out " + d + "/l.h5 --format sampled"; },
       1, "--format sampled needs --samples S (S >= 1)"},
      {"cache-teacher --temperature for a dense cache", true, [](auto& d, auto& fx) {
         return "cache-teacher --teacher " + fx + "/teacher.pt --data hdf5:" + fx + "/train.h5 --out " + d + "/l.h5 --temperature 2"; },
       1, "--temperature and --seed are for --format sampled"},
      {"kd at another temperature than the sampled cache's", true, [](auto& d, auto& fx) {
         fixture_cache(fx, d + "/s8.h5", CacheOptions().format("sampled").samples(8));
         return edited(d, fx, "teacher: {torchscript: " + fx + "/teacher.pt}",
                       "teacher: {cache: " + d + "/s8.h5, stream: true}\nloss: {kind: kd, temperature: 4}"); },
       1, "kd: the sampled cache was drawn at T = 1 but the objective's temperature is 4"},
      {"a streamed top-k cache chunked unlike its datasets", true, [](auto& d, auto& fx) {
         fixture_cache(fx, d + "/top2.h5", CacheOptions().format("topk").top_k(2));
         python("import h5py\nsrc = h5py.File('" + d + "/top2.h5', 'r')\n"
                "with h5py.File('" + d + "/mis.h5', 'w') as f:\n"
                "    for k in src:\n"
                "        f.create_dataset(k, data=src[k][()], chunks=((5,) if k == 'topk_indices' else (7,)) + src[k].shape[1:])\n"
                "    for k in src.attrs: f.attrs[k] = src.attrs[k]\n");
         return edited(d, fx, "teacher: {torchscript: " + fx + "/teacher.pt}", "teacher: {cache: " + d + "/mis.h5, stream: true}"); },
       1, "mis.h5:topk_indices is chunked in blocks of 5 rows but topk_logprobs in blocks of 7"},
      {"a truncated sampled cache", true, [](auto& d, auto& fx) {
         fixture_cache(fx, d + "/s8.h5", CacheOptions().format("sampled").samples(8));
         fs::resize_file(d + "/s8.h5", fs::file_size(d + "/s8.h5") * 3 / 4);
         return edited(d, fx, "teacher: {torchscript: " + fx + "/teacher.pt}", "teacher: {cache: " + d + "/s8.h5, stream: true}"); },
       1, "s8.h5"},
      {"cache-teacher topk above the classes", true, [](auto& d, auto& fx) {
         return "cache-teacher --teacher " + fx + "/teacher.pt --data hdf5:" + fx + "/train.h5 --out " + d + "/l.h5 --format topk --top-k 4"; },
       1, "k must be in [1, 3] (the classes), got 4"},
      {"dkd from a top-k cache", true, [](auto& d, auto& fx) {
         fixture_cache(fx, d + "/top2.h5", CacheOptions().format("topk").top_k(2));
         return edited(d, fx, "teacher: {torchscript: " + fx + "/teacher.pt}",
                       "teacher: {cache: " + d + "/top2.h5}\nloss: {kind: dkd}"); },
       1, "dkd: this objective needs the teacher's logits for every class; a top-k cache keeps 2"},
  };
  return cases;
}

}  // namespace

// One test per case, so that ctest lists and reports each; a case that needs the Python
// fixtures skips visibly (GTEST_SKIP) where they cannot be made.
class BadInput : public ::testing::TestWithParam<size_t> {};

TEST_P(BadInput, FailsCleanlyAndLeavesNothingBehind) {
  const auto& c = catalogue().at(GetParam());
  if (c.needs_fixtures && fixtures().empty()) GTEST_SKIP() << c.name << ": python3-torch or h5py missing";
  TempDir dir;
  const auto args = c.setup(dir.path(), fixtures());
  write(dir / "keep.txt", "earlier output");
  auto o = run(std::string(c.env) + " " + KDISTILL_CLI + " " + args);
  SCOPED_TRACE(std::string(c.name) + ": " + c.env + " kdistill " + args);
  EXPECT_EQ(o.status, c.status) << o.err;
  EXPECT_EQ(o.err.rfind("error: ", 0), 0u) << o.err;
  EXPECT_THAT(o.err, ::testing::HasSubstr(c.needle));
  if (c.status == 1) EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  for (const char* crash : {"terminate called", "Segmentation", "Aborted", "core dumped", "Traceback"}) {
    EXPECT_THAT(o.err, ::testing::Not(::testing::HasSubstr(crash)));
  }
  EXPECT_EQ(io::read_file(dir / "keep.txt"), "earlier output");
  for (const auto& entry : fs::recursive_directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos) << entry.path();
  }
}

INSTANTIATE_TEST_SUITE_P(Catalogue, BadInput, ::testing::Range<size_t>(0, catalogue().size()),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           std::string name;
                           for (char ch : std::string(catalogue().at(info.param).name)) {
                             name += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           }
                           return name;
                         });

}  // namespace kdistill::test
