// Tests for kdistill/data/mnist.h: loading an MNIST-family directory and normalising it.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/data/idx.h"
#include "kdistill/data/mnist.h"
#include "support.h"

namespace {

using kdistill::data::load_mnist_family;
using kdistill::data::load_mnist_split;
using kdistill::data::write_idx;
using kdistill::test::TempDir;

struct Raw {
  torch::Tensor train_images, train_labels, test_images, test_labels;
};

// Writes a tiny MNIST-family directory: 20 training and 10 test 28x28 images, labels 0..2.
Raw write_tiny(const TempDir& dir, const std::string& suffix) {
  torch::manual_seed(5);
  Raw r;
  r.train_images = torch::randint(0, 256, {20, 28, 28}, torch::kUInt8);
  r.train_labels = torch::arange(20, torch::kLong).remainder(3).to(torch::kUInt8);
  r.test_images = torch::randint(0, 256, {10, 28, 28}, torch::kUInt8);
  r.test_labels = torch::arange(10, torch::kLong).remainder(3).to(torch::kUInt8);
  write_idx(dir / ("train-images-idx3-ubyte" + suffix), r.train_images);
  write_idx(dir / ("train-labels-idx1-ubyte" + suffix), r.train_labels);
  write_idx(dir / ("t10k-images-idx3-ubyte" + suffix), r.test_images);
  write_idx(dir / ("t10k-labels-idx1-ubyte" + suffix), r.test_labels);
  return r;
}

std::string load_error(const std::string& dir) {
  return kdistill::test::error_of([&] { load_mnist_family(dir); });
}

void check_tiny(const std::string& dir, const Raw& raw) {
  const auto splits = load_mnist_family(dir, "tiny");
  EXPECT_EQ(splits.train.features().sizes().vec(), (std::vector<int64_t>{20, 1, 28, 28}));
  EXPECT_EQ(splits.test.features().sizes().vec(), (std::vector<int64_t>{10, 1, 28, 28}));
  EXPECT_EQ(splits.train.features().scalar_type(), torch::kFloat);
  EXPECT_EQ(splits.train.num_classes(), 3);
  EXPECT_EQ(splits.test.num_classes(), 3);
  EXPECT_EQ(splits.train.name(), "tiny/train");
  EXPECT_EQ(splits.test.name(), "tiny/test");
  EXPECT_TRUE(torch::equal(splits.train.targets(), raw.train_labels.to(torch::kLong)));
  EXPECT_TRUE(torch::equal(splits.test.targets(), raw.test_labels.to(torch::kLong)));

  // Mean and (sample) standard deviation of the training pixels scaled to [0, 1], in double.
  const auto px = raw.train_images.flatten();
  const int64_t n = px.numel();
  const auto* p = px.data_ptr<uint8_t>();
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < n; ++i) sum += p[i] / 255.0;
  const double mean = sum / n;
  for (int64_t i = 0; i < n; ++i) sq += (p[i] / 255.0 - mean) * (p[i] / 255.0 - mean);
  const double std_unbiased = std::sqrt(sq / (n - 1));
  EXPECT_NEAR(splits.mean, mean, 1e-6);
  EXPECT_NEAR(splits.std, std_unbiased, 1e-5);

  const auto train = splits.train.features().to(torch::kDouble);
  EXPECT_NEAR(train.mean().item<double>(), 0.0, 1e-5);
  EXPECT_NEAR(train.std().item<double>(), 1.0, 1e-4);
  // Test images are normalised with the training statistics.
  const auto expected_test = (raw.test_images.to(torch::kDouble) / 255.0 - mean) / std_unbiased;
  EXPECT_TRUE(torch::allclose(splits.test.features().squeeze(1).to(torch::kDouble), expected_test, 1e-4, 1e-4));
}

TEST(Mnist, LoadsGzDirectory) {
  TempDir dir;
  const auto raw = write_tiny(dir, ".gz");
  check_tiny(dir.path(), raw);
}

TEST(Mnist, LoadsPlainDirectory) {
  TempDir dir;
  const auto raw = write_tiny(dir, "");
  check_tiny(dir.path(), raw);
}

// One split is normalised exactly as the pair is (by the training statistics), and the training
// split reads only the training files.
TEST(Mnist, OneSplitMatchesTheFamilyAndTrainNeedsNoTestFiles) {
  TempDir dir;
  write_tiny(dir, ".gz");
  const auto both = load_mnist_family(dir.path(), "tiny");
  for (const std::string split : {"train", "test"}) {
    const auto one = load_mnist_split(dir.path(), split, "tiny");
    const auto& ref = split == "train" ? both.train : both.test;
    EXPECT_TRUE(torch::equal(one.features(), ref.features())) << split;  // bitwise
    EXPECT_TRUE(torch::equal(one.targets(), ref.targets())) << split;
    EXPECT_EQ(one.num_classes(), 3) << split;
    EXPECT_EQ(one.name(), "tiny/" + split);
  }
  std::filesystem::remove(dir / "t10k-images-idx3-ubyte.gz");
  EXPECT_TRUE(torch::equal(load_mnist_split(dir.path(), "train", "tiny").features(), both.train.features()));
  const auto msg = kdistill::test::error_of([&] { load_mnist_split(dir.path(), "test"); });
  EXPECT_NE(msg.find(dir / "t10k-images-idx3-ubyte.gz"), std::string::npos) << msg;
  const auto bad = kdistill::test::error_of([&] { load_mnist_split(dir.path(), "validation"); });
  EXPECT_NE(bad.find("split must be train or test, got \"validation\""), std::string::npos) << bad;
}

TEST(Mnist, MissingDirectoryListsFilesLookedFor) {
  TempDir dir;
  const std::string missing = dir / "no-such-dataset";
  const auto msg = load_error(missing);
  for (const std::string stem : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                 "t10k-labels-idx1-ubyte"}) {
    const std::string base = (std::filesystem::path(missing) / stem).string();
    EXPECT_NE(msg.find(base + ".gz"), std::string::npos) << stem << ": " << msg;
    // The plain name too: followed by the list separator, or ending the list.
    const bool plain = msg.find(base + ",") != std::string::npos ||
                       (msg.size() >= base.size() && msg.compare(msg.size() - base.size(), base.size(), base) == 0);
    EXPECT_TRUE(plain) << stem << " (plain): " << msg;
  }
  EXPECT_EQ(msg.find("apt-get"), std::string::npos) << msg;  // the package hint is for the Debian dir only
}

TEST(Mnist, OneMissingFileIsNamed) {
  TempDir dir;
  write_tiny(dir, ".gz");
  std::filesystem::remove(dir / "t10k-labels-idx1-ubyte.gz");
  const auto msg = load_error(dir.path());
  EXPECT_NE(msg.find(dir / "t10k-labels-idx1-ubyte.gz"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("train-images-idx3-ubyte"), std::string::npos) << msg;  // found files are not listed
}

TEST(Mnist, MismatchedImageAndLabelCountsThrow) {
  TempDir dir;
  write_tiny(dir, ".gz");
  write_idx(dir / "train-labels-idx1-ubyte.gz", torch::zeros({19}, torch::kUInt8));
  EXPECT_THROW(load_mnist_family(dir.path()), kdistill::Error);
}

TEST(Mnist, DebianFashionMnistLoads) {
  if (!std::filesystem::exists(kdistill::data::kFashionMnistDir))
    GTEST_SKIP() << kdistill::data::kFashionMnistDir << " is not installed (dataset-fashion-mnist)";
  const auto splits = load_mnist_family(kdistill::data::kFashionMnistDir, "fashion-mnist");
  EXPECT_EQ(splits.train.features().sizes().vec(), (std::vector<int64_t>{60000, 1, 28, 28}));
  EXPECT_EQ(splits.test.features().sizes().vec(), (std::vector<int64_t>{10000, 1, 28, 28}));
  EXPECT_EQ(splits.train.num_classes(), 10);
  EXPECT_EQ(splits.train.num_labelled(), 60000);
}

TEST(Mnist, DebianDirMissingSuggestsPackage) {
  if (std::filesystem::exists(kdistill::data::kFashionMnistDir))
    GTEST_SKIP() << kdistill::data::kFashionMnistDir << " exists: the missing-files hint cannot be shown";
  const auto msg = load_error(kdistill::data::kFashionMnistDir);
  EXPECT_NE(msg.find("apt-get install dataset-fashion-mnist"), std::string::npos) << msg;
}

}  // namespace
