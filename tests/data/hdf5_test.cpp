#include "kdistill/data/hdf5.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "support.h"

namespace kdistill::test {
TEST(Hdf5Data, ReadsAFileWrittenByH5py) {
  TempDir dir;
  auto py = python("import h5py, numpy as np\n"
                   "with h5py.File('" + (dir / "d.h5") + "', 'w') as f:\n"
                   "    f['feat'] = np.arange(12, dtype=np.float64).reshape(4, 3) / 2\n"
                   "    f['lab'] = np.array([2, 0, -1, 1], dtype=np.int32)\n");
  if (py.status != 0) GTEST_SKIP() << "python3-h5py is not installed: " << py.err;
  auto ds = data::load_hdf5(dir / "d.h5", "feat", "lab");
  EXPECT_EQ(ds.size(), 4);
  EXPECT_EQ(ds.num_classes(), 3);
  EXPECT_EQ(ds.features().scalar_type(), torch::kFloat);
  EXPECT_FLOAT_EQ(ds.features()[3][2].item<float>(), 5.5f);
  EXPECT_EQ(ds.targets()[2].item<int64_t>(), -1);
  EXPECT_EQ(ds.num_labelled(), 3);
}

TEST(Hdf5Data, SaveLoadRoundTripAndH5pyReadsIt) {
  TempDir dir;
  torch::manual_seed(0);
  data::TensorDataset ds(torch::randn({10, 2, 3}), torch::randint(0, 4, {10}), 4);
  data::save_hdf5(ds, dir / "rt.h5");
  auto back = data::load_hdf5(dir / "rt.h5");
  EXPECT_TRUE(torch::equal(back.features(), ds.features()));
  EXPECT_TRUE(torch::equal(back.targets(), ds.targets()));
  auto py = python("import h5py\nf = h5py.File('" + (dir / "rt.h5") + "', 'r')\nprint(f['x'].shape, f['y'].dtype)\n");
  if (py.status == 0) EXPECT_EQ(py.out, "(10, 2, 3) int64\n");
}

TEST(Hdf5Data, ErrorsNameTheFileAndTheDataset) {
  TempDir dir;
  data::save_hdf5(data::TensorDataset(torch::zeros({3, 2}), torch::tensor({0, 1, 1})), dir / "ok.h5");
  auto msg = error_of([&] { data::load_hdf5(dir / "ok.h5", "x", "labels"); });
  EXPECT_NE(msg.find("no dataset 'labels'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(dir / "ok.h5"), std::string::npos) << msg;
  std::ofstream(dir / "text.h5") << "not hdf5";
  msg = error_of([&] { data::load_hdf5(dir / "text.h5"); });
  EXPECT_NE(msg.find("is not an HDF5 file"), std::string::npos) << msg;
  msg = error_of([&] { data::load_hdf5(dir / "missing.h5"); });
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  auto py = python("import h5py, numpy as np\nwith h5py.File('" + (dir / "bad.h5") +
                   "', 'w') as f:\n    f['x'] = np.zeros((3, 2))\n    f['y'] = np.zeros(4, dtype=np.int64)\n");
  if (py.status == 0) {
    msg = error_of([&] { data::load_hdf5(dir / "bad.h5"); });
    EXPECT_NE(msg.find("has 3 rows but 'y' has 4"), std::string::npos) << msg;
  }
}

// Found by fuzz_hdf5: a dataset's header was trusted with memory. A small file declaring a 40 GB
// dataset that it never stored is refused before anything is allocated, while highly compressed
// real data (all zeros, gzip, ~1000:1) still loads.
TEST(Hdf5Data, DatasetsLargerThanTheFileCouldHoldAreRefused) {
  if (!have_python_module("h5py")) GTEST_SKIP() << "python3-h5py is not installed: skipped";
  TempDir dir;
  auto py = python("import h5py, numpy as np\n"
                   "with h5py.File('" + (dir / "sparse.h5") + "', 'w') as f:\n"
                   "    f.create_dataset('x', shape=(10**9, 10), dtype='f4')\n"
                   "    f['y'] = np.zeros(4, dtype=np.int8)\n"
                   "with h5py.File('" + (dir / "zeros.h5") + "', 'w') as f:\n"
                   "    f.create_dataset('x', data=np.zeros((1000, 1000), dtype='f4'), chunks=(1000, 1000),"
                   " compression='gzip', compression_opts=9)\n"
                   "    f['y'] = np.zeros(1000, dtype=np.int64)\n");
  ASSERT_EQ(py.status, 0) << py.err;
  ASSERT_LT(std::filesystem::file_size(dir / "sparse.h5"), 10000u);
  const auto msg = error_of([&] { data::load_hdf5(dir / "sparse.h5"); });
  EXPECT_NE(msg.find("x declares shape [1000000000, 10] (4e+10 bytes) but the file stores 0 bytes"),
            std::string::npos) << msg;
  ASSERT_LT(std::filesystem::file_size(dir / "zeros.h5"), 4000000u / 200);  // 4 MB of floats in < 20 KB
  EXPECT_EQ(data::load_hdf5(dir / "zeros.h5").size(), 1000);
}

TEST(Hdf5Data, FeaturesFingerprintIgnoresLabels) {
  torch::manual_seed(0);
  data::TensorDataset ds(torch::randn({20, 4}), torch::randint(0, 3, {20}), 3);
  const auto h = data::features_sha256(ds);
  EXPECT_EQ(h.size(), 64u);
  EXPECT_EQ(h, data::features_sha256(ds.with_label_budget(5)));
  auto changed = ds.features().clone();
  changed[7][1] += 1e-3;
  EXPECT_NE(h, data::features_sha256(data::TensorDataset(changed, ds.targets(), 3)));
  // Same bytes, other shape: another fingerprint.
  EXPECT_NE(h, data::features_sha256(data::TensorDataset(ds.features().view({20, 2, 2}), ds.targets(), 3)));
}

}  // namespace kdistill::test
