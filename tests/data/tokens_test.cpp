// Next-token data: the shift, padding, prompt masks, HDF5 token files written by h5py, and the
// byte-level text reader.
#include "kdistill/data/tokens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include <torch/torch.h>

#include "support.h"

namespace kdistill::test {
namespace {

using ::testing::HasSubstr;

TEST(TokenWindows, ShiftsInputsAgainstTargetsAndLeavesOutPadsAndPrompts) {
  auto tokens = torch::tensor(std::vector<int64_t>{5, 6, 7, 9, 5, 8, 0, 0}).view({2, 4});
  auto mask = torch::tensor({0, 0, 1, 1, 1, 1, 1, 1}).view({2, 4});  // row 0: a two-token prompt
  auto ds = data::token_windows(tokens, mask, data::TokenOptions().pad_id(0).vocab_size(10));
  EXPECT_TRUE(ds.is_sequence());
  EXPECT_EQ(ds.num_classes(), 10);
  // Position t reads token t and is scored against token t + 1.
  EXPECT_TRUE(ds.features().equal(torch::tensor(std::vector<int64_t>{5, 6, 7, 5, 8, 0}).view({2, 3})));
  // Row 0: target 6 is a prompt token (mask 0); row 1: the pads are never targets.
  EXPECT_TRUE(ds.targets().equal(torch::tensor(std::vector<int64_t>{-1, 7, 9, 8, -1, -1}).view({2, 3})));
  EXPECT_EQ(ds.num_labelled(), 3);
}

TEST(TokenWindows, TheDefaultPadMarkIsFedAsZeroAndInfersTheVocabulary) {
  auto ds = data::token_windows(torch::tensor(std::vector<int64_t>{3, 4, -1, -1}).view({1, 4}));
  EXPECT_TRUE(ds.features().equal(torch::tensor(std::vector<int64_t>{3, 4, 0}).view({1, 3})));
  EXPECT_TRUE(ds.targets().equal(torch::tensor(std::vector<int64_t>{4, -1, -1}).view({1, 3})));
  EXPECT_EQ(ds.num_classes(), 5);
}

TEST(TokenWindows, RefusesMalformedTokens) {
  EXPECT_THAT(error_of([] { data::token_windows(torch::zeros({3, 1}, torch::kLong)); }), HasSubstr("[N, L + 1]"));
  EXPECT_THAT(error_of([] { data::token_windows(torch::zeros({3, 4})); }), HasSubstr("must be integers"));
  EXPECT_THAT(error_of([] { data::token_windows(torch::full({1, 3}, -2, torch::kLong)); }),
              HasSubstr("token -2 is negative"));
  EXPECT_THAT(error_of([] {
                data::token_windows(torch::full({1, 3}, 7, torch::kLong), {}, data::TokenOptions().vocab_size(7));
              }),
              HasSubstr("token 7 is outside the vocabulary [0, 7)"));
  EXPECT_THAT(error_of([] { data::token_windows(torch::ones({2, 3}, torch::kLong), torch::ones({2, 2})); }),
              HasSubstr("mask must have the tokens' shape"));
}

TEST(TokenWindows, ReadsAnHdf5FileWrittenByH5py) {
  KDISTILL_REQUIRE_PYTHON_TORCH();
  if (!have_python_module("h5py")) GTEST_SKIP() << "h5py is not installed";
  TempDir dir;
  const auto path = dir / "tokens.h5";
  auto out = python("import h5py, numpy as np\n"
                    "with h5py.File('" + path + "', 'w') as f:\n"
                    "    f['tokens'] = np.array([[1, 2, 3, 9], [4, 5, 9, 9]], dtype=np.int32)\n"
                    "    f['mask'] = np.array([[0, 1, 1, 1], [1, 1, 1, 1]], dtype=np.uint8)\n"
                    "    f.attrs['pad_id'] = 9\n"
                    "    f.attrs['vocab_size'] = 12\n");
  ASSERT_EQ(out.status, 0) << out.err;
  auto ds = data::load_tokens_hdf5(path);
  EXPECT_EQ(ds.num_classes(), 12);
  EXPECT_TRUE(ds.features().equal(torch::tensor(std::vector<int64_t>{1, 2, 3, 4, 5, 9}).view({2, 3})));
  EXPECT_TRUE(ds.targets().equal(torch::tensor(std::vector<int64_t>{2, 3, -1, 5, -1, -1}).view({2, 3})));

  out = python("import h5py, numpy as np\n"
               "with h5py.File('" + (dir / "bad.h5") + "', 'w') as f:\n"
               "    f['tokens'] = np.zeros((2, 3), dtype=np.float32)\n");
  ASSERT_EQ(out.status, 0) << out.err;
  EXPECT_THAT(error_of([&] { data::load_tokens_hdf5(dir / "bad.h5"); }),
              HasSubstr("bad.h5:tokens must hold integers"));
  EXPECT_THAT(error_of([&] { data::load_tokens_hdf5(dir / "missing.h5"); }), HasSubstr("missing.h5"));
}

TEST(TextWindows, EveryByteAfterTheFirstIsATargetExactlyOnce) {
  TempDir dir;
  std::ofstream(dir / "b.txt") << "world";
  std::ofstream(dir / "a.txt") << "hello";
  auto bytes = data::read_bytes(dir.path());  // sorted by path, joined by '\n'
  const std::string expected = "hello\nworld";
  ASSERT_EQ(bytes.size(0), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(bytes[i].item<int64_t>(), expected[i]);

  auto ds = data::text_windows(bytes, 3);  // 11 bytes: windows [0,4), [3,7), [6,10); the tail is dropped
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.num_classes(), 256);
  EXPECT_TRUE(ds.targets().flatten().equal(bytes.narrow(0, 1, 9)));
  EXPECT_TRUE(ds.features().flatten().equal(bytes.narrow(0, 0, 9)));
  EXPECT_THAT(error_of([&] { data::text_windows(bytes, 11); }), HasSubstr("fewer than one window of 12"));
  EXPECT_THAT(error_of([&] { data::read_bytes(dir / "nothing"); }), HasSubstr("does not exist"));
}

}  // namespace
}  // namespace kdistill::test
