// The serve_eigen example: runs an exported student on an IDX file and on random images, with
// the documented exit statuses.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <string>
#include <vector>

#include "kdistill/models/builders.h"
#include "kdistill/models/model.h"
#include "kdistill/export/export.h"
#include "support.h"

// The example is built with the examples (KDISTILL_BUILD_EXAMPLES); without it these tests skip.
#define KDISTILL_REQUIRE_SERVE_EIGEN()                                                     \
  do {                                                                                   \
    if (std::string(kServeEigen).empty())                                                \
      GTEST_SKIP() << "the serve_eigen example is not built (KDISTILL_BUILD_EXAMPLES=OFF)"; \
  } while (0)

namespace kdistill::test {
namespace {

#ifdef KDISTILL_SERVE_EIGEN
constexpr const char* kServeEigen = KDISTILL_SERVE_EIGEN;
#else
constexpr const char* kServeEigen = "";
#endif

Output serve(const std::string& args) { return run(std::string(kServeEigen) + " " + args); }

// A plain (not gzip) IDX file of uint8 images [n, 28, 28].
void write_plain_idx(const std::string& path, const std::vector<unsigned char>& pixels, uint32_t n) {
  std::ofstream out(path, std::ios::binary);
  const unsigned char header[] = {0, 0, 0x08, 3};
  out.write(reinterpret_cast<const char*>(header), 4);
  for (uint32_t d : {n, 28u, 28u}) {
    const unsigned char be[] = {static_cast<unsigned char>(d >> 24), static_cast<unsigned char>(d >> 16),
                                static_cast<unsigned char>(d >> 8), static_cast<unsigned char>(d)};
    out.write(reinterpret_cast<const char*>(be), 4);
  }
  out.write(reinterpret_cast<const char*>(pixels.data()), static_cast<std::streamsize>(pixels.size()));
}

}  // namespace

TEST(ServeEigen, ClassifiesAnIdxFileAndRandomImages) {
  KDISTILL_REQUIRE_SERVE_EIGEN();
  TempDir dir;
  torch::manual_seed(0);
  ExportOptions options;
  options.input_shape({1, 28, 28});
  options.mean(0.2860);
  options.std(0.3530);
  export_model(Model(cnn({1, 28, 28}, {4}, 3)), dir / "student.h5", options);
  std::vector<unsigned char> pixels(5 * 28 * 28);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<unsigned char>((i * 37) % 256);
  write_plain_idx(dir / "images-idx3-ubyte", pixels, 5);

  auto o = serve(dir / "student.h5" + " " + dir / "images-idx3-ubyte");
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.out.find("class counts over 5 images:"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("batch-1 latency p50: "), std::string::npos) << o.out;

  o = serve(dir / "student.h5");
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.out.find("class counts over 1000 random images:"), std::string::npos) << o.out;
}

TEST(ServeEigen, HelpUsageAndErrors) {
  KDISTILL_REQUIRE_SERVE_EIGEN();
  auto o = serve("--help");
  EXPECT_EQ(o.status, 0);
  EXPECT_NE(o.out.find("usage: serve_eigen"), std::string::npos) << o.out;
  o = serve("");
  EXPECT_EQ(o.status, 2);
  EXPECT_NE(o.err.find("usage"), std::string::npos) << o.err;
  TempDir dir;
  o = serve(dir / "absent.h5");
  EXPECT_EQ(o.status, 1);
  EXPECT_EQ(o.err.rfind("error: ", 0), 0u) << o.err;
  EXPECT_NE(o.err.find(dir / "absent.h5"), std::string::npos) << o.err;

  torch::manual_seed(1);
  export_model(Model(mlp(784, {8}, 3)), dir / "m.h5");
  std::vector<unsigned char> pixels(2 * 28 * 28, 7);
  write_plain_idx(dir / "images", pixels, 2);
  std::ofstream(dir / "images.gz") << "\x1f\x8b not really";
  o = serve(dir / "m.h5" + " " + dir / "images.gz");
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.err.find("gzip-compressed"), std::string::npos) << o.err;
  o = serve(dir / "m.h5" + " " + dir / "images");
  EXPECT_EQ(o.status, 0) << o.err;
}

}  // namespace kdistill::test
