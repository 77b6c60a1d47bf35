// Tests for kdistill/data/tensor_dataset.h: constructor checks, label budgets, slicing.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/data/tensor_dataset.h"
#include "support.h"

namespace {

using kdistill::data::TensorDataset;
using ::testing::HasSubstr;

torch::Tensor labels(std::vector<int64_t> v) { return torch::tensor(v, torch::kLong); }

std::string ctor_error(torch::Tensor f, torch::Tensor t, int64_t c = 0) {
  return kdistill::test::error_of([&] { TensorDataset ds(f, t, c); });
}

TEST(TensorDataset, ConstructorRejectsBadInput) {
  const auto f = torch::randn({4, 2});
  EXPECT_THROW((void)TensorDataset(f, labels({0, 1, 2})), kdistill::Error);       // size mismatch
  EXPECT_THROW((void)TensorDataset(f, torch::zeros({4})), kdistill::Error);       // float targets
  EXPECT_THROW((void)TensorDataset(f, torch::zeros({4}, torch::kBool)), kdistill::Error);
  EXPECT_THROW((void)TensorDataset(f, labels({0, 1, 2, 3}).reshape({2, 2})), kdistill::Error);  // 2-D targets
  EXPECT_THROW((void)TensorDataset(f, labels({0, 1, 2, 3}), -1), kdistill::Error);
  EXPECT_THAT(ctor_error(f, labels({0, 1, 2})), HasSubstr("3"));
  EXPECT_THAT(ctor_error(f, labels({0, -2, 1, -1})), HasSubstr("-2"));
  EXPECT_THAT(ctor_error(f, labels({0, 1, 3, -1}), 3), HasSubstr("label 3"));
  EXPECT_NO_THROW((void)TensorDataset(f, labels({0, 1, 2, -1}), 3));
}

TEST(TensorDataset, InfersClassesAndStoresInt64) {
  const auto t32 = torch::tensor({0, 4, 2, -1}, torch::kInt);
  TensorDataset ds(torch::randn({4, 3}), t32, 0, "toy");
  EXPECT_EQ(ds.num_classes(), 5);  // max label 4 + 1
  EXPECT_EQ(ds.targets().scalar_type(), torch::kLong);
  EXPECT_TRUE(torch::equal(ds.targets(), labels({0, 4, 2, -1})));
  EXPECT_EQ(ds.size(), 4);
  EXPECT_EQ(ds.name(), "toy");
  EXPECT_EQ(TensorDataset(torch::randn({3, 1}), labels({1, 1, 0}), 10).num_classes(), 10);
  EXPECT_EQ(TensorDataset().size(), 0);
}

TEST(TensorDataset, SampleShapeAndNumLabelled) {
  auto t = labels({0, -1, 2, 1, -1, -1, 0});
  TensorDataset ds(torch::zeros({7, 1, 4, 5}), t, 3);
  EXPECT_EQ(ds.sample_shape(), (std::vector<int64_t>{1, 4, 5}));
  int64_t expected = 0;
  for (int64_t i = 0; i < t.size(0); ++i) expected += t[i].item<int64_t>() >= 0 ? 1 : 0;
  EXPECT_EQ(ds.num_labelled(), expected);
  EXPECT_EQ(ds.num_labelled(), 4);
}

TEST(TensorDataset, LabelBudgetKeepsFirstN) {
  const int64_t n = 10;
  auto t = torch::arange(n, torch::kLong).remainder(3);
  TensorDataset ds(torch::randn({n, 2}), t, 3);
  const auto budget = ds.with_label_budget(4);
  ASSERT_EQ(budget.size(), n);
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(budget.targets()[i].item<int64_t>(), i < 4 ? i % 3 : -1) << i;
  }
  EXPECT_EQ(budget.num_labelled(), 4);
  EXPECT_EQ(budget.num_classes(), 3);
  EXPECT_TRUE(torch::equal(budget.features(), ds.features()));
  EXPECT_EQ(ds.num_labelled(), n);  // the original is unchanged
  EXPECT_EQ(ds.with_label_budget(0).num_labelled(), 0);
  EXPECT_EQ(ds.with_label_budget(n + 5).num_labelled(), n);
  EXPECT_THROW(ds.with_label_budget(-1), kdistill::Error);
}

TEST(TensorDataset, LabelledOnlySelectsLabelledRows) {
  auto f = torch::arange(10, torch::kFloat).reshape({5, 2});
  TensorDataset ds(f, labels({0, -1, 2, -1, 1}), 4);
  const auto only = ds.labelled_only();
  EXPECT_EQ(only.size(), 3);
  EXPECT_TRUE(torch::equal(only.targets(), labels({0, 2, 1})));
  EXPECT_TRUE(torch::equal(only.features(), torch::stack({f[0], f[2], f[4]})));
  EXPECT_EQ(only.num_classes(), 4);
}

TEST(TensorDataset, SliceSharesStorage) {
  auto f = torch::arange(12, torch::kFloat).reshape({6, 2});
  TensorDataset ds(f, labels({0, 1, 0, 1, 0, 1}), 2, "base");
  auto s = ds.slice(2, 5);
  ASSERT_EQ(s.size(), 3);
  EXPECT_TRUE(torch::equal(s.features(), f.narrow(0, 2, 3)));
  EXPECT_EQ(s.features().data_ptr<float>(), ds.features().data_ptr<float>() + 2 * 2);
  s.features()[0][0].fill_(-100.f);  // writes through to the parent
  EXPECT_EQ(ds.features()[2][0].item<float>(), -100.f);
  EXPECT_EQ(s.num_classes(), 2);
  EXPECT_EQ(s.name(), "base");
  EXPECT_EQ(ds.slice(3, 3).size(), 0);
  EXPECT_THROW(ds.slice(4, 7), kdistill::Error);
  EXPECT_THROW(ds.slice(3, 2), kdistill::Error);
  EXPECT_THROW(ds.slice(-1, 2), kdistill::Error);
}

}  // namespace
