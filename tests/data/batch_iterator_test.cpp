// Tests for kdistill/data/batch_iterator.h: epoch coverage, seeded order, drop_last, mix_seed.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/data/batch_iterator.h"
#include "support.h"

namespace {

using kdistill::data::BatchIterator;
using kdistill::data::BatchOptions;
using kdistill::data::TensorDataset;

constexpr int64_t kN = 23;

TensorDataset make_dataset() {
  auto features = torch::arange(kN * 3, torch::kFloat).reshape({kN, 3});
  auto targets = torch::arange(kN, torch::kLong).remainder(4);
  return TensorDataset(features, targets, 4, "toy");
}

// The epoch's visiting order: all batches' indices, concatenated.
std::vector<int64_t> order_of(const BatchIterator& it) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < it.num_batches(); ++i) {
    auto idx = it.batch(i).indices;
    for (int64_t j = 0; j < idx.size(0); ++j) out.push_back(idx[j].item<int64_t>());
  }
  return out;
}

TEST(BatchIterator, ShuffledEpochVisitsEveryIndexOnce) {
  const auto ds = make_dataset();
  BatchIterator it(ds, BatchOptions().batch_size(5).shuffle(true).seed(7), 0);
  ASSERT_EQ(it.num_batches(), (kN + 4) / 5);
  std::vector<int64_t> count(kN, 0);
  for (int64_t i = 0; i < it.num_batches(); ++i) {
    const auto b = it.batch(i);
    const int64_t expected_len = i + 1 < it.num_batches() ? 5 : kN - 5 * i;
    ASSERT_EQ(b.indices.size(0), expected_len) << i;
    EXPECT_EQ(b.indices.scalar_type(), torch::kLong);
    EXPECT_TRUE(b.indices.device().is_cpu());
    EXPECT_TRUE(torch::equal(b.inputs, ds.features().index_select(0, b.indices))) << i;
    EXPECT_TRUE(torch::equal(b.targets, ds.targets().index_select(0, b.indices))) << i;
    for (int64_t j = 0; j < b.indices.size(0); ++j) ++count.at(b.indices[j].item<int64_t>());
  }
  for (int64_t k = 0; k < kN; ++k) EXPECT_EQ(count[k], 1) << "index " << k;
  // Shuffled: with 23! orders, the identity is (practically) impossible.
  std::vector<int64_t> identity(kN);
  for (int64_t k = 0; k < kN; ++k) identity[k] = k;
  EXPECT_NE(order_of(it), identity);
}

TEST(BatchIterator, OrderDependsOnSeedAndEpochOnly) {
  const auto ds = make_dataset();
  const auto opts = BatchOptions().batch_size(4).seed(11);
  const auto e0 = order_of(BatchIterator(ds, opts, 0));
  EXPECT_EQ(order_of(BatchIterator(ds, opts, 0)), e0);  // reproducible
  torch::manual_seed(999);                              // the global generator plays no part
  EXPECT_EQ(order_of(BatchIterator(ds, opts, 0)), e0);
  EXPECT_NE(order_of(BatchIterator(ds, opts, 1)), e0);
  EXPECT_NE(order_of(BatchIterator(ds, BatchOptions().batch_size(4).seed(12), 0)), e0);
  // The order does not depend on the batch size either: batching only cuts it.
  EXPECT_EQ(order_of(BatchIterator(ds, BatchOptions().batch_size(7).seed(11), 0)), e0);
}

TEST(BatchIterator, UnshuffledIsSequential) {
  const auto ds = make_dataset();
  BatchIterator it(ds, BatchOptions().batch_size(6).shuffle(false), 3);
  ASSERT_EQ(it.num_batches(), 4);
  for (int64_t i = 0; i < it.num_batches(); ++i) {
    const auto b = it.batch(i);
    const int64_t start = 6 * i, len = std::min<int64_t>(6, kN - start);
    EXPECT_TRUE(torch::equal(b.indices, torch::arange(start, start + len, torch::kLong))) << i;
    EXPECT_TRUE(torch::equal(b.inputs, ds.features().narrow(0, start, len))) << i;
    EXPECT_TRUE(torch::equal(b.targets, ds.targets().narrow(0, start, len))) << i;
  }
}

TEST(BatchIterator, DropLastCounts) {
  const auto ds = make_dataset();
  for (int64_t b : {1, 4, 5, 10, 22, 23}) {
    BatchIterator keep(ds, BatchOptions().batch_size(b), 0);
    BatchIterator drop(ds, BatchOptions().batch_size(b).drop_last(true), 0);
    EXPECT_EQ(keep.num_batches(), (kN + b - 1) / b) << b;
    EXPECT_EQ(drop.num_batches(), kN / b) << b;
    EXPECT_EQ(static_cast<int64_t>(order_of(drop).size()), (kN / b) * b) << b;
    EXPECT_EQ(static_cast<int64_t>(order_of(keep).size()), kN) << b;
  }
}

TEST(BatchIterator, RejectsBadArguments) {
  const auto ds = make_dataset();
  EXPECT_THROW((void)BatchIterator(ds, BatchOptions().batch_size(0)), kdistill::Error);
  EXPECT_THROW((void)BatchIterator(ds, BatchOptions().batch_size(kN + 1)), kdistill::Error);
  EXPECT_THROW((void)BatchIterator(ds, BatchOptions().batch_size(2), -1), kdistill::Error);
  const TensorDataset empty(torch::zeros({0, 3}), torch::zeros({0}, torch::kLong), 2);
  EXPECT_THROW((void)BatchIterator(empty, BatchOptions().batch_size(1)), kdistill::Error);
  BatchIterator it(ds, BatchOptions().batch_size(5), 0);
  EXPECT_THROW(it.batch(-1), kdistill::Error);
  EXPECT_THROW(it.batch(it.num_batches()), kdistill::Error);
}

TEST(MixSeed, MatchesSplitMix64AndSeparatesStreams) {
  // mix_seed(0, k) is output k+1 of the reference splitmix64 generator seeded with 0.
  EXPECT_EQ(kdistill::data::mix_seed(0, 0), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(kdistill::data::mix_seed(0, 1), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(kdistill::data::mix_seed(0, 2), 0x06c45d188009454fULL);
  std::set<uint64_t> seen;
  for (uint64_t seed : {0ULL, 1ULL, 42ULL}) {
    for (uint64_t stream = 0; stream < 100; ++stream) {
      EXPECT_EQ(kdistill::data::mix_seed(seed, stream), kdistill::data::mix_seed(seed, stream));
      seen.insert(kdistill::data::mix_seed(seed, stream));
    }
  }
  EXPECT_EQ(seen.size(), 300u);
}

}  // namespace
