// Sampled caches, and caches streamed from disk block by block (issue: sparse caches that stream).
#include "kdistill/teachers/cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/data/batch_iterator.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/losses/objective.h"
#include "kdistill/models/builders.h"
#include "kdistill/train/trainer.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

data::TensorDataset toy(int64_t n) { return rule_data(n, 4, "toy"); }

// toy(n) declared to have `classes` classes (its labels stay in [0, 3)): data for wide students.
data::TensorDataset wide(int64_t n, int64_t classes) {
  auto ds = toy(n);
  return data::TensorDataset(ds.features(), ds.targets(), classes, "toy");
}

TrainerOptions quiet() { return TrainerOptions().progress(false).batch_size(64).seed(5); }

// A teacher with many classes whose logits compress well (8 of them carry the inputs, the rest
// are 0): a cache much larger decoded than on disk, for the memory-cap test.
std::shared_ptr<Teacher> wide_teacher(int64_t classes) {
  return std::make_shared<CallableTeacher>(
      [classes](const torch::Tensor& x) { return torch::cat({x * 3, torch::zeros({x.size(0), classes - 8})}, 1); },
      "wide");
}

// The process's data segment (VmData, what RLIMIT_DATA limits) in KiB.
int64_t data_kb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmData:", 0) == 0) return std::stoll(line.substr(7));
  }
  return 0;
}

}  // namespace

// The child of the memory-cap test: trains a student from the cache --cache (made for
// toy(--rows)) with at most --limit-mb MB more data memory (RLIMIT_DATA) than it holds once its
// data set is made, streamed, or loaded whole with --whole.
int stream_child(const std::vector<std::string>& args) {
  std::string cache;
  int64_t rows = 0, limit_mb = 0, classes = 0;
  bool whole = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--cache") cache = args.at(++i);
    else if (args[i] == "--rows") rows = std::stoll(args.at(++i));
    else if (args[i] == "--classes") classes = std::stoll(args.at(++i));
    else if (args[i] == "--limit-mb") limit_mb = std::stoll(args.at(++i));
    else if (args[i] == "--whole") whole = true;
  }
  torch::set_num_threads(2);
  auto ds = wide(rows, classes);
  // The limit is on top of what the process holds already (libraries, threads, the data set).
  const rlim_t bytes = (static_cast<rlim_t>(data_kb()) << 10) + (static_cast<rlim_t>(limit_mb) << 20);
  const rlimit limit{bytes, bytes};
  if (setrlimit(RLIMIT_DATA, &limit) != 0) {
    std::perror("setrlimit");
    return 2;
  }
  try {
    auto teacher = std::make_shared<CachedTeacher>(cache, CacheReadOptions().stream(!whole).read_ahead_mb(16));
    teacher->check_matches(ds, classes);
    Model student(mlp(8, {16}, classes));
    auto result = DistillTrainer(student, teacher, TrainerOptions().progress(false).batch_size(256).epochs(1)).fit(ds);
    const auto stats = teacher->stream_stats();
    std::printf("trained %lld steps; peak %.1f MB of blocks\n", static_cast<long long>(result.steps),
                static_cast<double>(stats.peak_bytes) / (1 << 20));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 3;
  }
}

// A sampled cache holds, per sample, what sampled_targets draws from the teacher (with the cache's
// seed), its attributes say how, h5py reads it, and its rows come back as TeacherOutput::sampled
// with a stand-in whose top-1 is the teacher's.
TEST(SampledCache, StoresTheDrawsAndServesThem) {
  TempDir dir;
  auto ds = toy(60);
  torch::manual_seed(7);
  ModelTeacher teacher(Model(mlp(8, {16}, 5)));
  auto info = cache_teacher(teacher, ds, dir / "s16.h5",
                            CacheOptions().format("sampled").samples(16).temperature(2).seed(5).teacher_sha256("abc"));
  EXPECT_EQ(info.format, "sampled");
  EXPECT_EQ(info.draws, 16);
  EXPECT_EQ(info.temperature, 2);
  EXPECT_EQ(info.classes, 5);
  EXPECT_GT(info.bytes_per_row, 0);

  CachedTeacher cached(dir / "s16.h5");
  EXPECT_EQ(cached.info().format, "sampled");
  EXPECT_EQ(cached.info().draws, 16);
  EXPECT_EQ(cached.info().temperature, 2);
  EXPECT_FALSE(cached.dense());
  EXPECT_EQ(cached.describe(), "cache:" + (dir / "s16.h5") + " (16 draws)");
  EXPECT_NO_THROW(cached.check_matches(ds, 5));

  auto logits = compute_teacher_logits(teacher, ds);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  auto want = sampled_targets(logits, 16, 2.0, gen);  // one batch of 60: the writer's draws
  auto idx = torch::tensor({59, 0, 31}, torch::kLong);
  auto out = cached.outputs(torch::Tensor(), idx);
  EXPECT_TRUE(torch::equal(out.sampled.indices, want.indices.index_select(0, idx)));
  EXPECT_TRUE(torch::equal(out.sampled.weights, want.weights.index_select(0, idx)));  // 1/16 steps: exact in float16
  EXPECT_TRUE(torch::allclose(out.sampled.log_probs, want.log_probs.index_select(0, idx), 1e-3, 2e-3));
  EXPECT_TRUE(torch::equal(out.sampled.top1, logits.argmax(1).index_select(0, idx)));
  EXPECT_EQ(out.sampled.temperature, 2.0);
  ASSERT_EQ(out.logits.sizes(), torch::IntArrayRef({3, 5}));
  EXPECT_TRUE(torch::equal(out.logits.argmax(1), out.sampled.top1));
  // Below the top-1, the stand-in holds the log of each drawn class's share (5 classes, 16 draws:
  // every row is padded, and padding must not overwrite class 0).
  for (int64_t r = 0; r < 3; ++r) {
    for (int64_t j = 0; j < 16; ++j) {
      const int64_t c = out.sampled.indices[r][j].item<int64_t>();
      if (c < 0 || c == out.sampled.top1[r].item<int64_t>()) continue;
      EXPECT_NEAR(out.logits[r][c].item<double>(), std::log(out.sampled.weights[r][j].item<double>()), 1e-6) << r;
    }
  }

  auto py = python("import h5py\nf = h5py.File('" + (dir / "s16.h5") +
                   "', 'r')\nprint(f['sampled_indices'].dtype, f['sampled_indices'].shape, f['sampled_weights'].dtype, "
                   "f['sampled_logprobs'].dtype, f['top1_index'].shape, f.attrs['format'], f.attrs['draws'], "
                   "f.attrs['temperature'], f.attrs['classes'], f.attrs['seed'])\n");
  if (py.status == 0) EXPECT_EQ(py.out, "int32 (60, 16) float16 float16 (60,) sampled 16 2.0 5 5\n");
}

// Distilled from 64 draws per sample, a student learns what it learns from the dense cache at the
// same temperature: the two students predict alike. The objectives the draws cannot estimate,
// and another temperature, are refused by name.
TEST(SampledCache, DistilsLikeTheDenseCacheAndRefusesWhatItCannotEstimate) {
  TempDir dir;
  auto ds = toy(512);
  torch::manual_seed(7);
  ModelTeacher teacher(Model(mlp(8, {16}, 3)));
  cache_teacher(teacher, ds, dir / "dense.h5");
  cache_teacher(teacher, ds, dir / "s64.h5", CacheOptions().format("sampled").samples(64).temperature(2));
  auto distil = [&](const std::string& file, std::shared_ptr<Objective> objective) {
    torch::manual_seed(3);
    Model s(mlp(8, {16}, 3));
    DistillTrainer(s, std::make_shared<CachedTeacher>(dir / file), quiet().epochs(8).objective(objective)).fit(ds);
    return s.forward(ds.features()).argmax(1);
  };
  auto kd = [] { return std::make_shared<KDObjective>(KDLossOptions().temperature(2).alpha(1)); };
  auto from_dense = distil("dense.h5", kd());
  auto from_draws = distil("s64.h5", kd());
  auto teacher_says = compute_teacher_logits(teacher, ds).argmax(1);
  const double agree = from_draws.eq(from_dense).to(torch::kDouble).mean().item<double>();
  const double draws_vs_teacher = from_draws.eq(teacher_says).to(torch::kDouble).mean().item<double>();
  const double dense_vs_teacher = from_dense.eq(teacher_says).to(torch::kDouble).mean().item<double>();
  EXPECT_GT(agree, 0.9);
  EXPECT_GT(draws_vs_teacher, dense_vs_teacher - 0.05);

  EXPECT_THAT(error_of([&] { distil("s64.h5", std::make_shared<KDObjective>(KDLossOptions().temperature(4))); }),
              HasSubstr("kd: the sampled cache was drawn at T = 2 but the objective's temperature is 4"));
  EXPECT_THAT(error_of([&] { distil("s64.h5", std::make_shared<DKDObjective>()); }),
              HasSubstr("dkd: this objective needs the teacher's whole distribution; a sampled cache holds 64 draws"));
  EXPECT_THAT(error_of([&] {
                distil("s64.h5", std::make_shared<DivergenceObjective>(DivergenceOptions().kind("jsd").temperature(2)));
              }),
              HasSubstr("jsd: this objective needs the teacher's whole distribution"));
  EXPECT_NO_THROW(distil("s64.h5", std::make_shared<SoftTargetCEObjective>(2.0)));
  auto cached = std::make_shared<CachedTeacher>(dir / "s64.h5");
  EXPECT_THAT(error_of([&] { EnsembleTeacher e({cached, cached}); }), HasSubstr("is a sparse cache"));
}

// The block shuffle is a seeded permutation in which each window of blocks is a contiguous run.
TEST(BlockShuffle, PermutesBlocksAndRowsWithinWindows) {
  auto ds = toy(1000);
  auto opts = data::BatchOptions().batch_size(100).seed(9).block_rows(64).window_blocks(3);
  data::BatchIterator it(ds, opts, 0);
  std::vector<torch::Tensor> parts;
  for (int64_t i = 0; i < it.num_batches(); ++i) parts.push_back(it.indices(i));
  auto order = torch::cat(parts);
  EXPECT_TRUE(torch::equal(std::get<0>(order.sort()), torch::arange(1000)));
  // Blocks by first appearance; each run of 3 of them fills a contiguous stretch of the order.
  std::vector<int64_t> first_seen, lo(16, 1000), hi(16, -1);
  for (int64_t i = 0; i < 1000; ++i) {
    const int64_t b = order[i].item<int64_t>() / 64;
    if (hi[b] < 0) first_seen.push_back(b);
    lo[b] = std::min(lo[b], i);
    hi[b] = std::max(hi[b], i);
  }
  ASSERT_EQ(first_seen.size(), 16u);
  int64_t start = 0;
  for (size_t w = 0; w < first_seen.size(); w += 3) {
    int64_t len = 0, first = 1000, last = -1;
    for (size_t j = w; j < std::min<size_t>(w + 3, first_seen.size()); ++j) {
      const int64_t b = first_seen[j];
      len += std::min<int64_t>(64, 1000 - b * 64);
      first = std::min(first, lo[b]);
      last = std::max(last, hi[b]);
    }
    EXPECT_EQ(first, start) << "window " << w / 3;
    EXPECT_EQ(last, start + len - 1) << "window " << w / 3;
    start += len;
  }
  data::BatchIterator again(ds, opts, 0), next_epoch(ds, opts, 1), rows(ds, opts.block_rows(0), 0);
  EXPECT_TRUE(torch::equal(again.indices(3), it.indices(3)));
  EXPECT_FALSE(torch::equal(next_epoch.indices(3), it.indices(3)));
  EXPECT_FALSE(torch::equal(rows.indices(3), it.indices(3)));
  EXPECT_FALSE(torch::equal(order.narrow(0, 0, 64), torch::arange(order[0].item<int64_t>(), order[0].item<int64_t>() + 64)));
}

// Streamed, a cache serves exactly the rows it serves loaded whole: in the planned order, off the
// plan, dense and sampled, while holding less than the whole cache in memory.
TEST(StreamedCache, ServesTheRowsOfTheLoadedCache) {
  TempDir dir;
  auto ds = toy(3000);
  torch::manual_seed(7);
  ModelTeacher teacher(Model(mlp(8, {16}, 500)));
  cache_teacher(teacher, ds, dir / "dense.h5");
  cache_teacher(teacher, ds, dir / "s64.h5", CacheOptions().format("sampled").samples(64).seed(2));
  for (const std::string name : {"dense.h5", "s64.h5"}) {
    CachedTeacher whole(dir / name);
    CachedTeacher streamed(dir / name, CacheReadOptions().stream(true).read_ahead_mb(1));
    const int64_t block = streamed.block_rows();
    EXPECT_EQ(whole.block_rows(), 0);
    EXPECT_EQ(block, streamed.info().chunk_rows);
    ASSERT_GT(block, 1) << name;
    ASSERT_LT(block * 4, 3000) << name << ": too few blocks to test streaming";
    EXPECT_TRUE(streamed.info().streamed);
    EXPECT_THAT(streamed.describe(), HasSubstr(", streamed"));

    data::BatchIterator it(ds, data::BatchOptions().batch_size(64).seed(1).block_rows(block).window_blocks(2), 0);
    std::vector<torch::Tensor> plan;
    for (int64_t i = 0; i < it.num_batches(); ++i) plan.push_back(it.indices(i));
    streamed.plan(torch::cat(plan));
    for (int64_t i = 0; i < it.num_batches(); ++i) {
      auto a = whole.outputs(torch::Tensor(), it.indices(i)), b = streamed.outputs(torch::Tensor(), it.indices(i));
      ASSERT_TRUE(torch::equal(a.logits, b.logits)) << name << " batch " << i;
      if (a.sampled.indices.defined()) {
        ASSERT_TRUE(same({a.sampled.indices, a.sampled.weights, a.sampled.log_probs, a.sampled.top1},
                         {b.sampled.indices, b.sampled.weights, b.sampled.log_probs, b.sampled.top1}));
      }
    }
    auto off_plan = torch::randperm(3000, torch::kLong).narrow(0, 0, 77);
    EXPECT_TRUE(torch::equal(whole.logits({}, off_plan), streamed.logits({}, off_plan))) << name;
    const auto stats = streamed.stream_stats();
    const int64_t blocks = (3000 + block - 1) / block;
    EXPECT_GE(stats.blocks_read + stats.blocks_waited, blocks) << name;
    EXPECT_LT(stats.peak_bytes, whole.info().samples * (whole.outputs({}, torch::tensor({0L})).logits.numel() * 4))
        << name << ": held as much as the whole cache";
    EXPECT_EQ(whole.stream_stats().blocks_read, 0);
    // A data-parallel rank may get no rows of a batch: no rows, in the dtypes of full batches.
    const auto none = streamed.outputs(torch::Tensor(), torch::empty({0}, torch::kLong));
    EXPECT_EQ(none.logits.size(0), 0);
    if (none.sampled.indices.defined()) EXPECT_EQ(none.sampled.indices.scalar_type(), torch::kLong);
  }
}

// Training from a streamed cache resumes bitwise from a mid-epoch checkpoint, and a run that
// would shuffle differently (the cache loaded whole) refuses that checkpoint.
TEST(StreamedCache, TrainingResumesBitwiseAndRefusesAnotherShuffle) {
  TempDir full, cut;
  auto ds = wide(1000, 500);
  torch::manual_seed(7);
  ModelTeacher live(Model(mlp(8, {16}, 500)));
  cache_teacher(live, ds, full / "dense.h5");
  auto streamed = [&] {
    return std::make_shared<CachedTeacher>(full / "dense.h5", CacheReadOptions().stream(true).read_ahead_mb(1));
  };
  auto student = [] {
    torch::manual_seed(3);
    return Model(mlp(8, {16}, 500));
  };
  Model a = student();
  DistillTrainer(a, streamed(), quiet().epochs(2)).fit(ds);
  Model b = student();
  DistillTrainer(b, streamed(), quiet().epochs(2).max_steps(5).output_dir(cut.path())).fit(ds);
  Model c = student();
  DistillTrainer resumed(c, streamed(), quiet().epochs(2).output_dir(cut.path()));
  ASSERT_TRUE(resumed.resume());
  resumed.fit(ds);
  EXPECT_TRUE(same(a.parameters(), c.parameters()));
  EXPECT_FALSE(same(a.parameters(), b.parameters()));

  Model d = student();
  DistillTrainer whole(d, std::make_shared<CachedTeacher>(full / "dense.h5"), quiet().epochs(2).output_dir(cut.path()));
  ASSERT_TRUE(whole.resume());
  EXPECT_THAT(error_of([&] { whole.fit(ds); }), HasSubstr("was written shuffling blocks of "));
}

// A cache of 800 MB decoded trains when streamed in a process allowed 200 MB more memory than
// it starts with; loaded whole it cannot (the limit is real).
TEST(StreamedCache, TrainsUnderAMemoryLimitSmallerThanTheCache) {
  TempDir dir;
  const int64_t rows = 200000, classes = 1000;  // 800 MB of float32 logits decoded
  const std::string path = dir / "wide.h5";
  auto info = cache_teacher(*wide_teacher(classes), toy(rows), path, CacheOptions().batch_size(4096));
  const double decoded_mb = static_cast<double>(rows * classes * 4) / (1 << 20);
  EXPECT_LT(info.bytes_per_row * rows / (1 << 20), decoded_mb / 10) << "the test cache should compress";
  const std::string child = self_exe() + " --child=stream --cache " + path + " --rows " + std::to_string(rows) +
                            " --classes " + std::to_string(classes) + " --limit-mb 200";
  auto r = run(child);
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("trained 782 steps"));
  r = run(child + " --whole");
  EXPECT_EQ(r.status, 3) << r.out << r.err;  // an allocation inside the whole read fails
  EXPECT_THAT(r.err, HasSubstr("error: CachedTeacher: " + path + ":logits: rows ["));
}

}  // namespace kdistill::test
