#include "kdistill/data/eigen.h"

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "kdistill/core/error.h"

namespace kdistill::test {

TEST(EigenData, TensorViewSharesMemory) {
  data::RowMatrixXf m(2, 3);
  m << 1, 2, 3, 4, 5, 6;
  auto t = data::tensor_view(m);
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t[1][0].item<float>(), 4.0f);
  m(1, 0) = 40;
  EXPECT_EQ(t[1][0].item<float>(), 40.0f);  // a view, not a copy
}

TEST(EigenData, ToTensorCopiesAColumnMajorMatrixRowByRow) {
  Eigen::MatrixXf m(2, 3);  // column-major
  m << 1, 2, 3, 4, 5, 6;
  auto t = data::to_tensor(m);
  EXPECT_TRUE(torch::equal(t, torch::tensor({{1.0f, 2.0f, 3.0f}, {4.0f, 5.0f, 6.0f}})));
  m(0, 0) = 100;
  EXPECT_EQ(t[0][0].item<float>(), 1.0f);
}

TEST(EigenData, EigenViewMapsTensorMemoryAndRefusesOtherLayouts) {
  auto t = torch::arange(6, torch::kFloat).view({2, 3});
  auto m = data::eigen_view(t);
  EXPECT_EQ(m(1, 2), 5.0f);
  m(0, 1) = -1;
  EXPECT_EQ(t[0][1].item<float>(), -1.0f);
  EXPECT_THROW(data::eigen_view(t.t()), Error);  // not contiguous
  EXPECT_THROW(data::eigen_view(t.to(torch::kDouble)), Error);
  EXPECT_THROW(data::eigen_view(torch::zeros({2, 3, 1})), Error);
}

TEST(EigenData, FromEigenBuildsADataSet) {
  Eigen::MatrixXf x = Eigen::MatrixXf::Random(5, 4);
  Eigen::VectorXi y(5);
  y << 0, 2, -1, 1, 2;
  auto ds = data::from_eigen(x, y);
  EXPECT_EQ(ds.size(), 5);
  EXPECT_EQ(ds.num_classes(), 3);
  EXPECT_EQ(ds.num_labelled(), 4);
  EXPECT_FLOAT_EQ(ds.features()[3][2].item<float>(), x(3, 2));
  Eigen::VectorXi short_y(4);
  short_y << 0, 0, 0, 0;
  EXPECT_THROW(data::from_eigen(x, short_y), Error);
}

}  // namespace kdistill::test
