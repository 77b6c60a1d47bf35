// Data-parallel training over c10d Gloo on 127.0.0.1: the test starts this executable as its
// ranks (`kdistill_tests --child=dist ...`), and compares them with one process.
#include "kdistill/train/distributed.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/data/tokens.h"
#include "kdistill/models/builders.h"
#include "kdistill/models/sequence.h"
#include "kdistill/teachers/cache.h"
#include "kdistill/train/trainer.h"
#include "support.h"

namespace kdistill::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// A 3-class linear rule; 481 = 15 * 32 + 1 rows, so that each epoch's last batch has one row and
// one of two ranks gets none of it.
data::TensorDataset rows(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn({n, 8});
  torch::manual_seed(999);
  auto w = torch::randn({8, 3});
  return data::TensorDataset(x, x.matmul(w).argmax(1), 3, "rule");
}

Model mlp16(uint64_t seed, double dropout) {
  torch::manual_seed(seed);
  return Model(mlp(8, {16}, 3, dropout), "mlp:16");
}

// A run's pieces: per-sample rows and MLPs, or (`tokens`) padded token sequences and GRU
// language models, whose losses average over real tokens. 97 sequences in batches of 16: the
// last batch has one sequence, all of it one rank's.
struct Setup {
  Model student, teacher;
  data::TensorDataset train, eval;
  int64_t batch_size = 32;
};

data::TensorDataset padded_tokens(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  auto tokens = torch::randint(0, 12, {n, 9}, torch::kLong);
  auto lengths = torch::randint(3, 10, {n}, torch::kLong);
  auto columns = torch::arange(9, torch::kLong).unsqueeze(0);
  tokens.masked_fill_(columns.ge(lengths.unsqueeze(1)), -1);
  return data::token_windows(tokens, {}, data::TokenOptions().vocab_size(12));
}

Setup setup(bool tokens, double dropout) {
  Setup s;
  if (tokens) {
    torch::manual_seed(11);
    s.student = gru_lm(GRULMOptions(12).hidden(8));
    torch::manual_seed(7);
    s.teacher = gru_lm(GRULMOptions(12).hidden(16));
    s.train = padded_tokens(97, 1);
    s.eval = padded_tokens(31, 2);
    s.batch_size = 16;
  } else {
    s.student = mlp16(11, dropout);
    s.teacher = mlp16(7, 0.0);
    s.train = rows(481, 1);
    s.eval = rows(101, 2);
  }
  return s;
}

TrainerOptions options(const std::string& out) {
  auto o = TrainerOptions().progress(false).threads(1).lr(0.1).batch_size(32).epochs(3).seed(5).log_every(1);
  if (!out.empty()) o.output_dir(out).checkpoint_every(5);
  return o;
}

std::vector<torch::Tensor> parameters(const Model& m) {
  std::vector<torch::Tensor> w;
  for (auto& p : m.parameters()) w.push_back(p.detach().clone());
  return w;
}

// One process training `setup(tokens)` with the same global batch, in `micro_batches` parts:
// its final weights and result, what the ranks' run is compared with.
// With `cache`, the teacher is that logit cache (`stream`: read block by block).
std::pair<std::vector<torch::Tensor>, TrainResult> one_process(bool tokens, int64_t micro_batches,
                                                               const std::string& cache = "", bool stream = false) {
  auto s = setup(tokens, 0.0);
  std::shared_ptr<Teacher> teacher = std::make_shared<ModelTeacher>(s.teacher);
  if (!cache.empty()) teacher = std::make_shared<CachedTeacher>(cache, CacheReadOptions().stream(stream));
  DistillTrainer trainer(s.student, teacher, options("").batch_size(s.batch_size).micro_batches(micro_batches));
  auto result = trainer.fit(s.train, &s.eval);
  return {parameters(s.student), result};
}

std::vector<torch::Tensor> weights(const std::string& path, double dropout = 0.0, bool tokens = false) {
  auto m = setup(tokens, dropout).student;
  m.load_weights(path);
  return parameters(m);
}

double max_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double most = 0;
  for (size_t i = 0; i < a.size(); ++i) most = std::max(most, (a[i] - b[i]).abs().max().item<double>());
  return most;
}

bool equal(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!torch::equal(a[i], b[i])) return false;
  }
  return true;
}

// Starts `world` ranks of `--child=dist` with `args` (plus per-rank extras) and waits for all.
std::vector<Output> ranks(int world, const std::string& args, const std::vector<std::string>& extra = {}) {
  const int64_t port = free_loopback_port();
  std::vector<std::future<Output>> running;
  for (int r = 0; r < world; ++r) {
    const std::string cmd = self_exe() + " --child=dist --rank " + std::to_string(r) + " --world " +
                            std::to_string(world) + " --port " + std::to_string(port) + " " + args + " " +
                            (r < static_cast<int>(extra.size()) ? extra[r] : "");
    running.push_back(std::async(std::launch::async, [cmd] { return run(cmd); }));
  }
  std::vector<Output> out;
  for (auto& f : running) out.push_back(f.get());
  return out;
}

// `world` ranks with a 3 s timeout, rank 1 stopping itself (SIGSTOP) at step 7, a hung rank:
// the other ranks' outputs and how long they ran. The stopped rank is killed after.
struct HungRun {
  std::vector<Output> others;
  double seconds = 0;
};
HungRun run_with_a_hung_rank(int world, const std::string& out) {
  const int64_t port = free_loopback_port();
  const auto base = self_exe() + " --child=dist --world " + std::to_string(world) + " --port " + std::to_string(port) +
                    " --timeout 3 --out " + out + " --rank ";
  const auto t0 = Clock::now();
  auto hung = std::async(std::launch::async, [&] { return run(base + "1 --stop-at-step 7"); });
  std::vector<std::future<Output>> others;
  for (int r = 0; r < world; ++r) {
    if (r != 1) others.push_back(std::async(std::launch::async, [&base, r] { return run(base + std::to_string(r)); }));
  }
  HungRun h;
  for (auto& f : others) h.others.push_back(f.get());
  h.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto pid_file = fs::path(out) / "stopped.pid";
  for (int i = 0; i < 100 && !fs::exists(pid_file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(fs::exists(pid_file));
  if (fs::exists(pid_file)) ::kill(std::stoi(io::read_file(pid_file.string())), SIGKILL);
  hung.get();
  return h;
}

}  // namespace

// Every rank exited 0; if not, the test stops here (what it compares would be missing).
#define ASSERT_RANKS_OK(outputs)                             \
  for (size_t rank_ = 0; rank_ < (outputs).size(); ++rank_) \
  ASSERT_EQ((outputs)[rank_].status, 0) << "rank " << rank_ << ": " << (outputs)[rank_].err

#define KDISTILL_REQUIRE_GLOO()                                                                         \
  do {                                                                                                  \
    if (!ProcessGroup::has_backend("gloo")) GTEST_SKIP() << "built without Gloo's headers (libgloo-dev)"; \
  } while (0)

// One rank of a data-parallel run: `--rank R --world W --port P --out DIR [--dropout]
// [--resume] [--timeout S] [--kill-at-step K] [--stop-at-step K] [--bucket-mb X]
// [--micro-batches K] [--cache FILE [--stream]]`. `--stop-at-step` writes the
// process id to DIR/stopped.pid and stops the process (SIGSTOP): a hung rank.
int dist_child(const std::vector<std::string>& args) {
  int64_t rank = 0, world = 1, port = 0, kill_at = -1, stop_at = -1;
  int64_t micro_batches = 1;
  double timeout = 60, dropout = 0, bucket_mb = 0;
  bool resume = false, tokens = false, cuda = false, stream = false;
  std::string out, cache;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--rank") rank = std::stoll(args.at(++i));
    else if (args[i] == "--world") world = std::stoll(args.at(++i));
    else if (args[i] == "--port") port = std::stoll(args.at(++i));
    else if (args[i] == "--out") out = args.at(++i);
    else if (args[i] == "--timeout") timeout = std::stod(args.at(++i));
    else if (args[i] == "--dropout") dropout = 0.2;
    else if (args[i] == "--resume") resume = true;
    else if (args[i] == "--tokens") tokens = true;
    else if (args[i] == "--cuda") cuda = true;
    else if (args[i] == "--kill-at-step") kill_at = std::stoll(args.at(++i));
    else if (args[i] == "--stop-at-step") stop_at = std::stoll(args.at(++i));
    else if (args[i] == "--bucket-mb") bucket_mb = std::stod(args.at(++i));
    else if (args[i] == "--micro-batches") micro_batches = std::stoll(args.at(++i));
    else if (args[i] == "--cache") cache = args.at(++i);
    else if (args[i] == "--stream") stream = true;
  }
  try {
    auto s = setup(tokens, dropout);
    auto o = options(out).batch_size(s.batch_size).micro_batches(micro_batches);
    if (bucket_mb > 0) o.bucket_mb(bucket_mb);
    const auto device = cuda ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(rank)) : torch::kCPU;
    o.device(device.str());
    if (world > 1) {
      o.process_group(ProcessGroup::create(
          DistributedOptions().rank(rank).world_size(world).master_port(port).timeout_s(timeout), device));
    }
    std::shared_ptr<Teacher> teacher = std::make_shared<ModelTeacher>(s.teacher);
    if (!cache.empty()) teacher = std::make_shared<CachedTeacher>(cache, CacheReadOptions().stream(stream));
    DistillTrainer trainer(s.student, teacher, o);
    if (resume) trainer.resume();
    trainer.on_step([&](const StepInfo& s) {
      if (s.step == kill_at) std::raise(SIGKILL);
      if (s.step == stop_at) {
        std::ofstream(fs::path(out) / "stopped.pid") << ::getpid();
        std::raise(SIGSTOP);
      }
    });
    auto result = trainer.fit(s.train, &s.eval);
    if (rank == 0) {
      s.student.save((fs::path(out) / "final.pt").string());
      nlohmann::json j = {{"accuracy", result.final_eval.accuracy},
                          {"agreement", result.final_eval.agreement},
                          {"steps", result.steps},
                          {"bytes", result.distributed.allreduce_bytes_per_step},
                          {"world", result.distributed.world_size},
                          {"buckets", result.distributed.allreduce_buckets},
                          {"in_backward", result.distributed.buckets_in_backward}};
      io::atomic_write_string((fs::path(out) / "result.json").string(), j.dump());
    }
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

TEST(Distributed, OptionsComeFromTorchrunsVariables) {
  struct Env {  // sets variables for this test and restores them after
    std::vector<std::pair<std::string, std::optional<std::string>>> saved;
    void set(const std::string& k, const char* v) {
      const char* was = std::getenv(k.c_str());
      saved.emplace_back(k, was ? std::optional<std::string>(was) : std::nullopt);
      if (v) ::setenv(k.c_str(), v, 1);
      else ::unsetenv(k.c_str());
    }
    ~Env() {
      for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
        if (it->second) ::setenv(it->first.c_str(), it->second->c_str(), 1);
        else ::unsetenv(it->first.c_str());
      }
    }
  } env;
  for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) env.set(k, nullptr);
  auto single = distributed_from_env();
  EXPECT_EQ(single.world_size(), 1);
  EXPECT_EQ(single.rank(), 0);
  EXPECT_EQ(single.master_port(), 29500);

  env.set("WORLD_SIZE", "4");
  env.set("RANK", "3");
  env.set("LOCAL_RANK", "1");
  env.set("MASTER_ADDR", "node7");
  env.set("MASTER_PORT", "29511");
  auto o = distributed_from_env(DistributedOptions().timeout_s(12).backend("gloo"));
  EXPECT_EQ(o.world_size(), 4);
  EXPECT_EQ(o.rank(), 3);
  EXPECT_EQ(o.local_rank(), 1);
  EXPECT_EQ(o.master_addr(), "node7");
  EXPECT_EQ(o.master_port(), 29511);
  EXPECT_EQ(o.timeout_s(), 12);
  EXPECT_EQ(o.backend(), "gloo");

  env.set("RANK", "4");
  EXPECT_THAT(error_of([] { distributed_from_env(); }), HasSubstr("RANK='4' is not an integer in [0, 3]"));
  env.set("RANK", "x1");
  EXPECT_THAT(error_of([] { distributed_from_env(); }), HasSubstr("RANK='x1'"));
  env.set("RANK", "0");
  env.set("MASTER_PORT", "70000");
  EXPECT_THAT(error_of([] { distributed_from_env(); }), HasSubstr("MASTER_PORT='70000'"));

  const auto port = free_loopback_port();
  EXPECT_TRUE(port >= 1024 && port <= 65535) << port;  // an ephemeral port, not a privileged one

  EXPECT_THAT(error_of([] { ProcessGroup::create(DistributedOptions().rank(2).world_size(2)); }),
              HasSubstr("rank 2 is outside [0, 2)"));
  EXPECT_THAT(error_of([] { ProcessGroup::create(DistributedOptions().backend("mpi")); }),
              HasSubstr("backend must be gloo or nccl"));
  if (!ProcessGroup::has_backend("nccl")) {
    EXPECT_THAT(error_of([] { ProcessGroup::create(DistributedOptions().backend("nccl")); }),
                HasSubstr("the nccl backend needs a CUDA build of libtorch with NCCL"));
  }
  EXPECT_THAT(error_of([] { ProcessGroup::create(DistributedOptions().backend("nccl")); }), HasSubstr("nccl"));
}

TEST(Distributed, TwoRanksTrainTheModelOneProcessTrainsWithTheSameGlobalBatch) {
  KDISTILL_REQUIRE_GLOO();
  TempDir dir;
  auto r = ranks(2, "--out " + dir.path());
  ASSERT_RANKS_OK(r);

  // One process, the same global batch of 32 run as two micro-batches of 16: the same split of
  // every batch, so the same sums in the same order: bitwise the same weights.
  const auto [w, single] = one_process(false, 2);
  const auto ranks_w = weights(dir / "final.pt");
  EXPECT_TRUE(equal(w, ranks_w)) << max_difference(w, ranks_w);

  // And one process with the whole batch at once: the same model up to float rounding.
  EXPECT_LT(max_difference(one_process(false, 1).first, ranks_w), 1e-5);

  // The evaluation is gathered from both ranks' shares: the same numbers as one process's.
  auto j = nlohmann::json::parse(io::read_file(dir / "result.json"));
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), single.final_eval.accuracy);
  EXPECT_DOUBLE_EQ(j["agreement"].get<double>(), single.final_eval.agreement);
  EXPECT_EQ(j["steps"], 3 * 16);
  EXPECT_EQ(j["world"], 2);
  // 8*16 + 16 + 16*3 + 3 = 195 float gradients and the loss and its 2 terms in double.
  EXPECT_EQ(j["bytes"], 195 * 4 + 3 * 8);
  // One bucket (1 MiB holds them all), started by the hook on the last gradient backward
  // accumulates; rank 0 has no rows of each epoch's 1-row last batch: 3 of 48 steps.
  EXPECT_EQ(j["buckets"], 1);
  EXPECT_DOUBLE_EQ(j["in_backward"].get<double>(), 45.0 / 48.0);

  // Only rank 0 wrote: one metrics.jsonl line per step and per epoch, as one process writes.
  EXPECT_EQ(io::read_lines(dir / "metrics.jsonl").size(), 3u * 16 + 3);
}

TEST(Distributed, BucketsStartDuringBackwardAndSumAsOneBucketDoes) {
  KDISTILL_REQUIRE_GLOO();
  // 2 bytes a bucket: each of the 4 parameters in its own, so 4 collectives a step, each started
  // by backward's hook on that parameter, in the same order on both ranks.
  TempDir dir;
  auto r = ranks(2, "--bucket-mb 0.000002 --out " + dir.path());
  ASSERT_RANKS_OK(r);
  const auto w = weights(dir / "final.pt");
  const auto reference = one_process(false, 2).first;
  EXPECT_TRUE(equal(reference, w)) << max_difference(reference, w);
  auto j = nlohmann::json::parse(io::read_file(dir / "result.json"));
  EXPECT_EQ(j["buckets"], 4);
  EXPECT_DOUBLE_EQ(j["in_backward"].get<double>(), 45.0 / 48.0);
  EXPECT_EQ(j["bytes"], 195 * 4 + 3 * 8);

  // With micro-batches the hooks copy only what the last micro-batch's backward leaves: the
  // gradient of both halves (copied after the first, a step would use half of it). One process in
  // 4 parts sums the same parts in another order: equal up to rounding.
  TempDir micro;
  r = ranks(2, "--bucket-mb 0.000002 --micro-batches 2 --out " + micro.path());
  ASSERT_RANKS_OK(r);
  const auto w4 = weights(micro / "final.pt");
  EXPECT_LT(max_difference(one_process(false, 4).first, w4), 1e-5);
}

TEST(Distributed, SequencesAverageOverTheGlobalBatchsRealTokens) {
  KDISTILL_REQUIRE_GLOO();
  TempDir dir;
  auto r = ranks(2, "--tokens --out " + dir.path());
  ASSERT_RANKS_OK(r);
  // Each rank weights its tokens against the whole batch's real tokens (the ranks' counts
  // differ with the padding): the same as one process in two micro-batches, bitwise.
  const auto w = one_process(true, 2).first, w2 = weights(dir / "final.pt", 0.0, true);
  EXPECT_TRUE(equal(w, w2)) << max_difference(w, w2);
  EXPECT_LT(max_difference(one_process(true, 1).first, w2), 1e-5);
  EXPECT_GT(max_difference(parameters(setup(true, 0.0).student), w2), 1e-3);  // it did train
}

// Each rank reads its rows of a top-k cache, loaded whole or streamed block by block: the same
// weights as one process reading the same cache in two micro-batches.
TEST(Distributed, RanksReadTheirRowsOfATopKCacheWholeOrStreamed) {
  KDISTILL_REQUIRE_GLOO();
  TempDir dir;
  auto s = setup(false, 0.0);
  ModelTeacher teacher(s.teacher);
  const std::string cache = dir / "top2.h5";
  cache_teacher_topk(teacher, s.train, cache, 2, "test-teacher");  // 481 rows: one block when streamed
  for (bool stream : {false, true}) {
    TempDir out;
    auto r = ranks(2, "--cache " + cache + (stream ? " --stream" : "") + " --out " + out.path());
    ASSERT_RANKS_OK(r);
    const auto w = weights(out / "final.pt");
    const auto reference = one_process(false, 2, cache, stream).first;
    EXPECT_TRUE(equal(reference, w)) << stream << ": " << max_difference(reference, w);
    EXPECT_GT(max_difference(parameters(setup(false, 0.0).student), w), 1e-3) << stream;  // it did train
    // The top-2 cache is not the live teacher: a different run.
    EXPECT_GT(max_difference(one_process(false, 2).first, w), 1e-6) << stream;
  }
}

TEST(Distributed, TwoGpusOverNcclTrainTheModelOneGpuTrains_CUDA) {
  if (torch::cuda::device_count() < 2) GTEST_SKIP() << "needs two CUDA devices";
  if (!ProcessGroup::has_backend("nccl")) GTEST_SKIP() << "this libtorch has no NCCL";
  TempDir dir;
  auto r = ranks(2, "--cuda --out " + dir.path());
  ASSERT_RANKS_OK(r);
  auto s = setup(false, 0.0);  // one_process's run, on cuda:0
  DistillTrainer one(s.student, std::make_shared<ModelTeacher>(s.teacher),
                     options("").micro_batches(2).device("cuda:0"));
  one.fit(s.train, &s.eval);
  auto w = parameters(s.student);
  for (auto& t : w) t = t.cpu();
  EXPECT_LT(max_difference(w, weights(dir / "final.pt")), 1e-4);
}

TEST(Distributed, AKilledRankStopsTheOtherWithinTheTimeoutAndTheCheckpointStays) {
  KDISTILL_REQUIRE_GLOO();
  TempDir dir;
  const auto t0 = Clock::now();
  auto r = ranks(2, "--timeout 20 --out " + dir.path(), {"", "--kill-at-step 12"});
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_EQ(r[1].status, 128 + SIGKILL) << r[1].err;
  EXPECT_EQ(r[0].status, 1) << r[0].err;
  EXPECT_THAT(r[0].err, HasSubstr("rank 0 of 2"));
  EXPECT_THAT(r[0].err, HasSubstr("rank 1 stopped"));
  EXPECT_LT(seconds, 20 + 15);
  EXPECT_FALSE(fs::exists(dir / "final.pt"));
  // The step-10 checkpoint is whole: a resume of both ranks finishes the run.
  auto again = ranks(2, "--resume --out " + dir.path());
  ASSERT_RANKS_OK(again);
  EXPECT_THAT(again[0].err + again[1].err, ::testing::Not(HasSubstr("error")));
}

TEST(Distributed, AHungRankFailsTheOtherAfterTheTimeout) {
  KDISTILL_REQUIRE_GLOO();
  TempDir dir;
  const auto h = run_with_a_hung_rank(2, dir.path());
  ASSERT_EQ(h.others.size(), 1u);
  EXPECT_EQ(h.others[0].status, 1) << h.others[0].err;
  EXPECT_THAT(h.others[0].err, HasSubstr("rank 0 of 2"));
  EXPECT_THAT(h.others[0].err, HasSubstr("within the 3 s timeout"));
  EXPECT_GE(h.seconds, 3);
  EXPECT_LT(h.seconds, 3 + 20);
}

// Of three or more ranks, a failed collective does not say which peer went: the others name it
// from the heartbeats. Killed: rank 2, then rank 0, which also serves the store.
TEST(Distributed, OfThreeRanksTheOthersNameTheKilledOne) {
  KDISTILL_REQUIRE_GLOO();
  {  // unharmed, three ranks finish, and their heartbeats stop with them
    TempDir dir;
    auto r = ranks(3, "--timeout 20 --out " + dir.path());
    ASSERT_RANKS_OK(r);
    EXPECT_TRUE(fs::exists(dir / "final.pt"));
  }
  for (int killed : {2, 0}) {
    TempDir dir;
    std::vector<std::string> extra(3);
    extra[killed] = "--kill-at-step 12";
    const auto t0 = Clock::now();
    auto r = ranks(3, "--timeout 20 --out " + dir.path(), extra);
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    for (int k = 0; k < 3; ++k) {
      if (k == killed) {
        EXPECT_EQ(r[k].status, 128 + SIGKILL) << r[k].err;
        continue;
      }
      EXPECT_EQ(r[k].status, 1) << k << ": " << r[k].err;
      EXPECT_THAT(r[k].err, HasSubstr("rank " + std::to_string(k) + " of 3")) << killed;
      EXPECT_THAT(r[k].err, HasSubstr("rank " + std::to_string(killed) + " stopped")) << killed;
      EXPECT_THAT(r[k].err, ::testing::Not(HasSubstr("ranks "))) << killed;  // the survivor is not named
    }
    EXPECT_LT(seconds, 20 + 15) << killed;
  }
}

// A hung rank (stopped, so its heartbeat stops too) is named once the others' timeout ends.
TEST(Distributed, OfThreeRanksTheOthersNameTheHungOne) {
  KDISTILL_REQUIRE_GLOO();
  TempDir dir;
  const auto h = run_with_a_hung_rank(3, dir.path());
  ASSERT_EQ(h.others.size(), 2u);
  for (const auto& r : h.others) {
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("rank 1 stopped (no heartbeat for 2 s)"));
    EXPECT_THAT(r.err, HasSubstr("within the 3 s timeout"));
  }
}

TEST(Distributed, ResumeAfterSigkillEqualsTheUninterruptedRun) {
  KDISTILL_REQUIRE_GLOO();
  TempDir ref, killed;
  // With dropout: every rank draws its own masks, and the checkpoint keeps every rank's generator.
  auto full = ranks(2, "--dropout --out " + ref.path());
  ASSERT_RANKS_OK(full);
  // Killed mid-epoch after the checkpoint of step 10, then at step 23, resuming from step 20: by
  // then the ranks' generators differ (step 16's batch had one row, all of it rank 1's), and
  // each must continue its own.
  for (const char* kill : {"13", "23"}) {
    auto r = ranks(2, std::string("--dropout --resume --timeout 20 --out ") + killed.path(),
                   {"", std::string("--kill-at-step ") + kill});
    ASSERT_EQ(r[1].status, 128 + SIGKILL) << r[1].err;
    ASSERT_EQ(r[0].status, 1) << r[0].err;
  }
  auto done = ranks(2, "--dropout --resume --out " + killed.path());
  ASSERT_RANKS_OK(done);
  const auto a = weights(ref / "final.pt", 0.2), b = weights(killed / "final.pt", 0.2);
  EXPECT_TRUE(equal(a, b)) << max_difference(a, b);
}

TEST(Distributed, ARunResumesWithADifferentWorldSize) {
  KDISTILL_REQUIRE_GLOO();
  TempDir ref, killed;
  auto full = ranks(2, "--out " + ref.path());
  ASSERT_RANKS_OK(full);
  auto r = ranks(2, "--timeout 20 --out " + killed.path(), {"", "--kill-at-step 23"});
  ASSERT_EQ(r[1].status, 128 + SIGKILL) << r[1].err;
  // One process continues from the 2-rank checkpoint of step 20: the global batch is the same.
  auto one = ranks(1, "--resume --out " + killed.path());
  ASSERT_RANKS_OK(one);
  EXPECT_THAT(one[0].err, HasSubstr("resuming a run of 2 process(es) with 1"));
  EXPECT_LT(max_difference(weights(ref / "final.pt"), weights(killed / "final.pt")), 1e-5);
}

}  // namespace kdistill::test
