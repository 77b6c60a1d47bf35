// serve_eigen: classifies images with a student written by `kdistill export`, using the Eigen
// runtime alone: this program links kdistill::runtime (Eigen + HDF5), not LibTorch.
//
//   serve_eigen MODEL.h5 [IDX_IMAGES_FILE]
//
// With an IDX image file (plain, not gzip: e.g. t10k-images-idx3-ubyte), its uint8 pixels are
// scaled to [0, 1] (the model file holds any further normalisation); without one, random images
// are classified. Prints the model, the predicted class counts and the batch-1 latency.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "kdistill/runtime/runtime.h"

namespace {

constexpr int kBatch = 256;           // images per predict() call when classifying a file
constexpr int kLatencyCalls = 1000;   // batch-1 calls timed for the latency
constexpr int64_t kRandomImages = 1000;  // images classified when no file is given

constexpr const char* kUsage = "usage: serve_eigen MODEL.h5 [IDX_IMAGES_FILE]\n";
constexpr const char* kHelp =
    "serve_eigen: classify images with a student exported by `kdistill export`, without LibTorch.\n"
    "\n"
    "  MODEL.h5         the exported student (kdistill export --model S.pt --out MODEL.h5)\n"
    "  IDX_IMAGES_FILE  uint8 images in IDX format, not gzip-compressed (gunzip the MNIST .gz files);\n"
    "                   pixels are scaled to [0, 1]. Without it, random images are used.\n"
    "\n"
    "Prints the predicted class counts and the median (p50) latency of 1000 batch-1 calls.\n";

// Reads uint8 images from an IDX file (magic 0x00 0x00 0x08 ndims, big-endian uint32 dimensions,
// then the data); each image must hold `per_image` values.
std::vector<float> read_idx_images(const std::string& path, int64_t per_image, int64_t& count) {
  std::ifstream in(path, std::ios::binary);
  kdistill::check(static_cast<bool>(in), "serve_eigen: cannot open ", path);
  const std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  kdistill::check(!(bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b), "serve_eigen: ", path,
                  " is gzip-compressed; gunzip it first");
  kdistill::check(bytes.size() >= 4 && bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0x08 && bytes[3] >= 1,
                  "serve_eigen: ", path, " is not an IDX file of uint8 values");
  const size_t ndims = bytes[3];
  const size_t header = 4 + 4 * ndims;
  kdistill::check(bytes.size() >= header, "serve_eigen: ", path, " is truncated in its header");
  std::vector<int64_t> dims(ndims);
  for (size_t d = 0; d < ndims; ++d) {
    const unsigned char* p = &bytes[4 + 4 * d];
    dims[d] = (int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | int64_t{p[3]};
  }
  count = dims[0];
  int64_t size = 1;
  for (size_t d = 1; d < ndims; ++d) size *= dims[d];
  kdistill::check(size == per_image, "serve_eigen: ", path, " holds images of ", size, " values, the model takes ",
                  per_image);
  kdistill::check(count > 0, "serve_eigen: ", path, " holds no images");
  kdistill::check(bytes.size() == header + static_cast<size_t>(count * size), "serve_eigen: ", path, " should hold ",
                  header + static_cast<size_t>(count * size), " bytes, it has ", bytes.size());
  std::vector<float> images(static_cast<size_t>(count * size));
  std::transform(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end(), images.begin(),
                 [](unsigned char v) { return static_cast<float>(v) / 255.0f; });
  return images;
}

int serve(const std::string& model_path, const std::string& images_path) {
  const auto model = kdistill::runtime::Model::load(model_path);
  std::cout << model.describe();
  const int64_t size = model.input_size(), classes = model.num_classes();

  int64_t count = kRandomImages;
  std::vector<float> images;
  if (!images_path.empty()) {
    images = read_idx_images(images_path, size, count);
  } else {
    std::mt19937 rng(0);
    std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
    images.resize(static_cast<size_t>(count * size));
    for (auto& v : images) v = pixel(rng);
  }

  std::vector<int64_t> votes(static_cast<size_t>(classes), 0);
  std::vector<float> logits(static_cast<size_t>(kBatch * classes));
  for (int64_t start = 0; start < count; start += kBatch) {
    const int n = static_cast<int>(std::min<int64_t>(kBatch, count - start));
    model.predict(images.data() + start * size, n, logits.data());
    for (int i = 0; i < n; ++i) {
      const float* row = logits.data() + i * classes;
      ++votes[static_cast<size_t>(std::max_element(row, row + classes) - row)];
    }
  }
  std::cout << "class counts over " << count << (images_path.empty() ? " random" : "") << " images:";
  for (int64_t c = 0; c < classes; ++c) std::cout << " " << c << ":" << votes[static_cast<size_t>(c)];
  std::cout << "\n";

  std::vector<double> micros;
  micros.reserve(kLatencyCalls);
  model.predict(images.data(), 1, logits.data());  // warm-up: this thread's buffers are sized here
  for (int i = 0; i < kLatencyCalls; ++i) {
    const float* x = images.data() + (i % count) * size;
    const auto t0 = std::chrono::steady_clock::now();
    model.predict(x, 1, logits.data());
    const auto t1 = std::chrono::steady_clock::now();
    micros.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::nth_element(micros.begin(), micros.begin() + kLatencyCalls / 2, micros.end());
  std::cout << "batch-1 latency p50: " << micros[kLatencyCalls / 2] << " us over " << kLatencyCalls << " calls\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << kHelp << kUsage;
      return 0;
    }
  }
  const bool option = std::any_of(args.begin(), args.end(), [](const std::string& a) { return a.rfind("-", 0) == 0; });
  if (args.empty() || args.size() > 2 || option) {
    std::cerr << "error: expected a model file and optionally an IDX image file\n" << kUsage;
    return 2;
  }
  try {
    return serve(args[0], args.size() == 2 ? args[1] : "");
  } catch (const std::exception& e) {
    std::cerr << "error: " << kdistill::first_line(e.what()) << "\n";
    return 1;
  }
}
