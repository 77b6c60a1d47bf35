#include "kdistill/teachers/cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "fixtures/fixtures.h"
#include "io/atomic_file_hook.h"
#include "kdistill/core/error.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/models/builders.h"
#include "kdistill/train/trainer.h"
#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

data::TensorDataset toy(int64_t n) { return rule_data(n, 4, "toy"); }

// A small student distilled for 2 epochs from `teacher` on `ds`, from fixed initial weights.
std::vector<torch::Tensor> distil_toy_student(std::shared_ptr<Teacher> teacher, const data::TensorDataset& ds,
                                              int64_t batch_size) {
  torch::manual_seed(3);
  Model s(mlp(8, {8}, 3));
  DistillTrainer(s, std::move(teacher), TrainerOptions().epochs(2).batch_size(batch_size).progress(false)).fit(ds);
  return s.parameters();
}

void kill_inside_write(const std::string&, const std::string& tmp) {
  std::filesystem::resize_file(tmp, std::filesystem::file_size(tmp) / 2);
  std::raise(SIGKILL);
}

}  // namespace

// The child the cache kill test starts: caches a teacher's logits for toy(N) at --out;
// `--kill-in-write` SIGKILLs it inside the write, its temporary cut to half.
int cache_child(const std::vector<std::string>& args) {
  std::string out;
  int64_t n = 50;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--out") out = args.at(++i);
    else if (args[i] == "--samples") n = std::stoll(args.at(++i));
    else if (args[i] == "--kill-in-write") io::detail::set_atomic_write_hook(kill_inside_write);
  }
  torch::manual_seed(7);
  ModelTeacher teacher(Model(mlp(8, {16}, 3)));
  cache_teacher_logits(teacher, toy(n), out, "abc123", 16);
  return 0;
}

// An interrupted cache writer is never taken for a complete cache: killed inside its first write
// it leaves no cache at all; killed while replacing a cache (for other data) it leaves the old
// one byte for byte. The next complete write removes the dead writer's temporaries.
TEST(TeacherCache, InterruptedWriteIsNeverTakenForACache) {
  TempDir dir;
  const std::string exe = self_exe();
  const std::string path = dir / "logits.h5";
  auto r = run(exe + " --child=cache --kill-in-write --out " + path);
  ASSERT_EQ(r.status, 128 + SIGKILL) << r.err;
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_THAT(error_of([&] { CachedTeacher c(path); }), HasSubstr("does not exist"));

  r = run(exe + " --child=cache --out " + path);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto before = io::read_file(path);
  r = run(exe + " --child=cache --kill-in-write --samples 80 --out " + path);
  ASSERT_EQ(r.status, 128 + SIGKILL) << r.err;
  EXPECT_EQ(io::read_file(path), before);
  CachedTeacher cached(path);
  EXPECT_NO_THROW(cached.check_matches(toy(50), 3));
  int temporaries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    temporaries += e.path().filename().string().find(".tmp.") != std::string::npos;
  }
  EXPECT_EQ(temporaries, 1);  // the second killed writer's; the first's went with the complete write

  r = run(exe + " --child=cache --samples 80 --out " + path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(CachedTeacher(path).info().samples, 80);
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"logits.h5"});
}

TEST(TeacherCache, WritesLogitsThatH5pyReadsWithProvenance) {
  TempDir dir;
  auto ds = toy(50);
  torch::manual_seed(7);
  ModelTeacher teacher(Model(mlp(8, {16}, 3)));
  auto info = cache_teacher_logits(teacher, ds, dir / "c.h5", "abc123", 16);
  EXPECT_EQ(info.samples, 50);
  EXPECT_EQ(info.classes, 3);
  EXPECT_EQ(info.data_sha256, data::features_sha256(ds));
  CachedTeacher cached(dir / "c.h5");
  // Batches of 16 against one batch of 50: equal up to the GEMM's float rounding.
  auto expected = teacher.logits(ds.features(), torch::arange(50));
  EXPECT_TRUE(torch::allclose(cached.all(), expected, 1e-5, 1e-6));
  auto idx = torch::tensor({7, 0, 49}, torch::kLong);
  EXPECT_TRUE(torch::equal(cached.logits(torch::Tensor(), idx), cached.all().index_select(0, idx)));
  EXPECT_EQ(cached.info().teacher_sha256, "abc123");
  EXPECT_FALSE(cached.runs_on_inputs());
  auto py = python("import h5py\nf = h5py.File('" + (dir / "c.h5") +
                   "', 'r')\nprint(f['logits'].shape, f['logits'].dtype, f.attrs['teacher_sha256'], "
                   "f.attrs['data_sha256'] == '" + info.data_sha256 + "')\n");
  if (py.status == 0) EXPECT_EQ(py.out, "(50, 3) float32 abc123 True\n");
}

TEST(TeacherCache, MismatchesAreNamed) {
  TempDir dir;
  auto ds = toy(40);
  ModelTeacher teacher(Model(mlp(8, {4}, 3)));
  cache_teacher_logits(teacher, ds, dir / "c.h5");
  CachedTeacher cached(dir / "c.h5");
  EXPECT_NO_THROW(cached.check_matches(ds, 3));
  EXPECT_THAT(error_of([&] { cached.check_matches(ds.slice(0, 39)); }),
              HasSubstr("40 samples but the training set has 39"));
  EXPECT_THAT(error_of([&] { cached.check_matches(ds, 4); }), HasSubstr("3 classes but the data set has 4"));
  auto other = data::TensorDataset(ds.features() + 1, ds.targets(), 3);
  EXPECT_THAT(error_of([&] { cached.check_matches(other); }), HasSubstr("was made for other data"));
}

TEST(TeacherCache, ProbabilitiesBecomeLogitsWithTheSameSoftmax) {
  TempDir dir;
  auto py = python("import h5py, numpy as np\n"
                   "p = np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0]], dtype=np.float32)\n"
                   "with h5py.File('" + (dir / "p.h5") + "', 'w') as f:\n    f['probs'] = p\n"
                   "with h5py.File('" + (dir / "bad.h5") + "', 'w') as f:\n    f['probs'] = p * 3\n"
                   "with h5py.File('" + (dir / "nan.h5") + "', 'w') as f:\n    f['logits'] = np.array([[0, 1], [np.nan, 2]], dtype=np.float32)\n"
                   "with h5py.File('" + (dir / "none.h5") + "', 'w') as f:\n    f['other'] = p\n");
  if (py.status != 0) GTEST_SKIP() << "python3-h5py is not installed";
  CachedTeacher t(dir / "p.h5");
  EXPECT_TRUE(t.info().from_probs);
  auto soft = torch::softmax(t.all(), 1);
  EXPECT_NEAR(soft[0][0].item<float>(), 0.7f, 1e-6);
  EXPECT_NEAR(soft[1][1].item<float>(), 1.0f, 1e-6);  // clamped zeros stay ~0
  EXPECT_TRUE(torch::isfinite(t.all()).all().item<bool>());
  EXPECT_THAT(error_of([&] { CachedTeacher x(dir / "bad.h5"); }), HasSubstr("outside [0, 1]"));
  EXPECT_THAT(error_of([&] { CachedTeacher x(dir / "nan.h5"); }), HasSubstr("row 1"));
  EXPECT_THAT(error_of([&] { CachedTeacher x(dir / "none.h5"); }), HasSubstr("neither a 'logits' nor a 'probs'"));
}

TEST(TeacherCache, DistillingFromTheCacheEqualsDistillingFromTheLiveTeacher) {
  TempDir dir;
  auto ds = toy(256);
  torch::manual_seed(7);
  Model teacher_model(mlp(8, {16}, 3));
  auto live = std::make_shared<ModelTeacher>(teacher_model);
  cache_teacher_logits(*live, ds, dir / "c.h5");
  auto cached = std::make_shared<CachedTeacher>(dir / "c.h5");
  // The live teacher sees shuffled batches of 32, the cache was written in one batch of 256: their
  // logits differ in the last bits, so the students agree to rounding, not bitwise.
  auto a = distil_toy_student(live, ds, 32), b = distil_toy_student(cached, ds, 32);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-4, 1e-5)) << i;
}

// compute_teacher_logits is the live teacher's forward, row for row; an in-memory cache built
// from it answers each sample index with the teacher's output for that sample, keeps its own copy,
// and distils what the live teacher does; fit() refuses one whose row count is not the data's.
TEST(TeacherCache, InMemoryLogitsServeRowsByIndex) {
  auto ds = toy(70);
  torch::manual_seed(7);
  Model teacher_model(mlp(8, {16}, 3));
  ModelTeacher live(teacher_model);
  auto all = compute_teacher_logits(live, ds, 16);  // 70 is not a multiple of 16: a short last batch
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{70, 3}));
  torch::Tensor expected;
  {
    torch::NoGradGuard g;
    expected = teacher_model.forward(ds.features());
  }
  EXPECT_TRUE(torch::allclose(all, expected, 1e-5, 1e-6));

  auto cached = CachedTeacher::from_logits(all, "toy");
  EXPECT_FALSE(cached->runs_on_inputs());
  EXPECT_EQ(cached->samples(), 70);
  EXPECT_EQ(cached->describe(), "cache:memory:toy");
  EXPECT_EQ(cached->info().samples, 70);
  EXPECT_EQ(cached->info().classes, 3);
  auto idx = torch::tensor({69, 0, 33}, torch::kLong);
  torch::Tensor expected_rows;
  {
    torch::NoGradGuard g;
    expected_rows = teacher_model.forward(ds.features().index_select(0, idx));
  }
  EXPECT_TRUE(torch::allclose(cached->logits(torch::Tensor(), idx), expected_rows, 1e-5, 1e-6));
  all.zero_();  // the caller's tensor changing later does not reach the teacher
  EXPECT_TRUE(torch::allclose(cached->logits(torch::Tensor(), idx), expected_rows, 1e-5, 1e-6));
  EXPECT_NO_THROW(cached->check_matches(ds, 3));
  EXPECT_THAT(error_of([&] { cached->check_matches(ds.slice(0, 69)); }),
              HasSubstr("70 samples but the training set has 69"));

  auto a = distil_toy_student(std::make_shared<ModelTeacher>(teacher_model), ds, 16),
       b = distil_toy_student(cached, ds, 16);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-4, 1e-5)) << i;
  torch::manual_seed(3);
  Model s(mlp(8, {8}, 3));
  EXPECT_THAT(error_of([&] {
                DistillTrainer(s, cached, TrainerOptions().epochs(1).batch_size(16).progress(false)).fit(ds.slice(0, 60));
              }),
              HasSubstr("holds logits for 70 samples but the training set 'toy' has 60"));

  auto bad = expected.clone();
  bad[5][1] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(error_of([&] { CachedTeacher::from_logits(bad, "toy"); }), HasSubstr("row 5"));
  EXPECT_THAT(error_of([&] { CachedTeacher::from_logits(expected[0], "toy"); }), HasSubstr("must be [N, C]"));
  EXPECT_THAT(error_of([&] { compute_teacher_logits(live, ds.slice(0, 0)); }), HasSubstr("is empty"));
}

}  // namespace kdistill::test

namespace kdistill::test {

// A top-k cache holds what topk_targets gives for the teacher's logits (log-probabilities in
// float16), records its format, k, classes and stored bytes, and h5py reads it. Its rows come back
// as TeacherOutput::topk with a dense stand-in whose top-1 is the teacher's.
TEST(TopKCache, StoresTheTopKClassesTheTailAndItsSize) {
  TempDir dir;
  auto ds = toy(60);
  torch::manual_seed(7);
  Model teacher_model(mlp(8, {16}, 5));
  ModelTeacher teacher(teacher_model);
  auto dense_info = cache_teacher_logits(teacher, ds, dir / "dense.h5");
  auto info = cache_teacher_topk(teacher, ds, dir / "top2.h5", 2, "abc123");
  EXPECT_EQ(info.format, "topk");
  EXPECT_EQ(info.k, 2);
  EXPECT_EQ(info.classes, 5);
  EXPECT_GT(info.bytes_per_row, 0);
  EXPECT_LT(info.bytes_per_row, dense_info.bytes_per_row);

  CachedTeacher cached(dir / "top2.h5");
  EXPECT_EQ(cached.top_k(), 2);
  EXPECT_EQ(cached.info().format, "topk");
  EXPECT_EQ(cached.info().teacher_sha256, "abc123");
  EXPECT_EQ(cached.info().data_sha256, data::features_sha256(ds));
  EXPECT_NO_THROW(cached.check_matches(ds, 5));
  EXPECT_EQ(cached.describe(), "cache:" + (dir / "top2.h5") + " (top-2)");
  EXPECT_EQ(CachedTeacher(dir / "dense.h5").info().format, "dense");

  auto idx = torch::tensor({59, 0, 31}, torch::kLong);
  auto out = cached.outputs(torch::Tensor(), idx);
  auto expected = topk_targets(compute_teacher_logits(teacher, ds).index_select(0, idx), 2);
  EXPECT_TRUE(torch::equal(out.topk.indices, expected.indices));
  EXPECT_TRUE(torch::allclose(out.topk.log_probs, expected.log_probs, 2e-3, 1e-3));  // float16 storage
  EXPECT_TRUE(torch::allclose(out.topk.log_tail, expected.log_tail, 1e-5, 1e-5));
  ASSERT_EQ(out.logits.sizes(), torch::IntArrayRef({3, 5}));
  EXPECT_TRUE(torch::equal(out.logits.argmax(1), expected.indices.select(1, 0)));
  // The stand-in's probabilities: the top-k as stored, the tail shared evenly by the 3 other classes.
  auto p = out.logits.exp();
  EXPECT_TRUE(torch::allclose(p.sum(1), torch::ones({3}), 1e-3, 1e-3));

  auto py = python("import h5py\nf = h5py.File('" + (dir / "top2.h5") +
                   "', 'r')\nprint(f['topk_logprobs'].dtype, f['topk_logprobs'].shape, f['topk_indices'].dtype, "
                   "f['tail_logprob'].shape, f.attrs['format'], f.attrs['k'], f.attrs['classes'])\n");
  if (py.status == 0) EXPECT_EQ(py.out, "float16 (60, 2) int32 (60,) topk 2 5\n");
}

// With every class kept, a top-k cache distils the same student as the dense cache, to the
// rounding of its float16 log-probabilities; with k = 2 of 5 it distils a different one.
TEST(TopKCache, WithEveryClassDistilsLikeTheDenseCache) {
  TempDir dir;
  auto ds = toy(256);
  torch::manual_seed(7);
  ModelTeacher teacher(Model(mlp(8, {16}, 3)));
  cache_teacher_logits(teacher, ds, dir / "dense.h5");
  cache_teacher_topk(teacher, ds, dir / "top3.h5", 3);
  cache_teacher_topk(teacher, ds, dir / "top1.h5", 1);
  auto dense = distil_toy_student(std::make_shared<CachedTeacher>(dir / "dense.h5"), ds, 32);
  auto all = distil_toy_student(std::make_shared<CachedTeacher>(dir / "top3.h5"), ds, 32);
  auto top1 = distil_toy_student(std::make_shared<CachedTeacher>(dir / "top1.h5"), ds, 32);
  double differs = 0;
  for (size_t i = 0; i < dense.size(); ++i) {
    EXPECT_TRUE(torch::allclose(all[i], dense[i], 1e-3, 1e-3)) << i;
    differs = std::max(differs, (top1[i] - dense[i]).abs().max().item<double>());
  }
  EXPECT_GT(differs, 1e-3);
}

TEST(TopKCache, RefusesWhatItCannotServe) {
  TempDir dir;
  auto ds = toy(30);
  ModelTeacher teacher(Model(mlp(8, {4}, 3)));
  EXPECT_THAT(error_of([&] { cache_teacher_topk(teacher, ds, dir / "x.h5", 4); }),
              HasSubstr("cache_teacher: top_k must be in [1, 3] (the classes), got 4"));
  cache_teacher_topk(teacher, ds, dir / "top2.h5", 2);
  auto cached = std::make_shared<CachedTeacher>(dir / "top2.h5");
  EXPECT_THAT(error_of([&] { EnsembleTeacher e({cached, cached}); }), HasSubstr("(top-2)) is a sparse cache; an ensemble averages dense distributions"));
  torch::manual_seed(3);
  Model s(mlp(8, {8}, 3));
  DistillTrainer dkd(s, cached, TrainerOptions().epochs(1).batch_size(8).progress(false).objective(std::make_shared<DKDObjective>()));
  EXPECT_THAT(error_of([&] { dkd.fit(ds); }), HasSubstr("dkd: this objective needs the teacher's logits for every class"));

  auto py = python("import h5py, numpy as np\n"
                   "src = h5py.File('" + (dir / "top2.h5") + "', 'r')\n"
                   "def copy(name, edit):\n"
                   "    with h5py.File('" + dir.path() + "/' + name, 'w') as f:\n"
                   "        for k in src: f[k] = src[k][()]\n"
                   "        for k in src.attrs: f.attrs[k] = src.attrs[k]\n"
                   "        edit(f)\n"
                   "def far(f):\n    i = f['topk_indices'][()]; i[3, 1] = 7; del f['topk_indices']; f['topk_indices'] = i\n"
                   "def short(f):\n    t = f['tail_logprob'][()][:-1]; del f['tail_logprob']; f['tail_logprob'] = t\n"
                   "def bigk(f):\n    f.attrs['k'] = 3\n"
                   "def nok(f):\n    del f.attrs['k']\n"
                   "def fmt(f):\n    f.attrs['format'] = 'sparse'\n"
                   "for n, e in [('far', far), ('short', short), ('bigk', bigk), ('nok', nok), ('fmt', fmt)]:\n"
                   "    copy(n + '.h5', e)\n");
  if (py.status != 0) GTEST_SKIP() << "python3-h5py is not installed: " << py.err;
  auto load = [&](const std::string& name) { return error_of([&] { CachedTeacher t(dir / name); }); };
  EXPECT_THAT(load("far.h5"), HasSubstr("far.h5:topk_indices must be in [0, 3)"));
  EXPECT_THAT(load("short.h5"), HasSubstr("short.h5:tail_logprob has 29 rows but topk_logprobs has 30"));
  EXPECT_THAT(load("bigk.h5"), HasSubstr("bigk.h5:topk_logprobs must be [N, k] with k = 3, got shape [30, 2]"));
  EXPECT_THAT(load("nok.h5"), HasSubstr("nok.h5 has no attribute 'k'"));
  EXPECT_THAT(load("fmt.h5"), HasSubstr("attribute 'format' must be dense, topk or sampled, got \"sparse\""));
}

}  // namespace kdistill::test
