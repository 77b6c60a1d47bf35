#include "kdistill/data/mnist.h"

#include <filesystem>
#include <tuple>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/data/idx.h"
#include "core/huge_pages.h"

namespace kdistill::data {
namespace {

namespace fs = std::filesystem;

std::string find_file(const std::string& dir, const std::string& stem, std::vector<std::string>& looked) {
  for (const auto& suffix : {".gz", ""}) {
    auto p = (fs::path(dir) / (stem + suffix)).string();
    if (fs::exists(p)) return p;
    looked.push_back(p);
  }
  return {};
}

constexpr const char* kStems[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                  "t10k-labels-idx1-ubyte"};

// The files of the first `count` stems, or a failure listing every name looked for.
std::vector<std::string> find_files(const std::string& dir, size_t count) {
  std::vector<std::string> paths, looked;
  for (size_t i = 0; i < count; ++i) paths.push_back(find_file(dir, kStems[i], looked));
  for (const auto& p : paths) {
    if (p.empty()) {
      std::string list;
      for (const auto& l : looked) list += (list.empty() ? "" : ", ") + l;
      std::string normal = fs::path(dir).lexically_normal().string();
      while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
      const bool debian_default = normal == kFashionMnistDir;
      fail("load_mnist_family: data set files missing in ", dir, "; looked for ", list,
           debian_default ? " (install them with: apt-get install dataset-fashion-mnist)" : "");
    }
  }
  return paths;
}

// Images as float [N, 1, H, W] scaled to [0, 1], and labels as int64 [N].
std::pair<torch::Tensor, torch::Tensor> load_pair(const std::string& image_path, const std::string& label_path) {
  auto images = read_idx(image_path);
  auto labels = read_idx(label_path);
  check(images.dim() == 3, "load_mnist_family: ", image_path, " must hold images [N, H, W], got shape ",
        images.sizes());
  check(labels.dim() == 1, "load_mnist_family: ", label_path, " must hold labels [N], got shape ", labels.sizes());
  check(images.size(0) == labels.size(0), "load_mnist_family: ", image_path, " has ", images.size(0),
        " images but ", label_path, " has ", labels.size(0), " labels");
  auto scaled = detail::empty_on_huge_pages({images.size(0), 1, images.size(1), images.size(2)}, torch::kFloat);
  scaled.copy_(images.unsqueeze(1)).div_(255.0f);
  return {scaled, labels.to(torch::kLong)};
}

// Normalises the training images in place by their own mean and standard deviation; returns those.
std::pair<double, double> normalise_training(torch::Tensor& train_x, const std::string& dir) {
  const double mean = train_x.mean().item<double>(), std = train_x.std().item<double>();
  check(std > 0, "load_mnist_family: training images in ", dir, " are constant");
  train_x.sub_(mean).div_(std);
  return {mean, std};
}

}  // namespace

ImageSplits load_mnist_family(const std::string& dir, const std::string& name) {
  const auto paths = find_files(dir, 4);
  auto [train_x, train_y] = load_pair(paths[0], paths[1]);
  auto [test_x, test_y] = load_pair(paths[2], paths[3]);
  check(train_x.sizes().slice(1) == test_x.sizes().slice(1), "load_mnist_family: training images are ",
        train_x.sizes().slice(1), " but test images are ", test_x.sizes().slice(1));
  ImageSplits out;
  std::tie(out.mean, out.std) = normalise_training(train_x, dir);
  test_x.sub_(out.mean).div_(out.std);
  // Class count from the training labels: a test split that lacks a class must not shrink C.
  const int64_t classes = train_y.max().item<int64_t>() + 1;
  out.train = TensorDataset(train_x, train_y, classes, name + "/train");
  out.test = TensorDataset(test_x, test_y, classes, name + "/test");
  return out;
}

TensorDataset load_mnist_split(const std::string& dir, const std::string& split, const std::string& name) {
  check(split == "train" || split == "test", "load_mnist_split: split must be train or test, got \"", split, "\"");
  if (split == "test") return load_mnist_family(dir, name).test;
  const auto paths = find_files(dir, 2);
  auto [train_x, train_y] = load_pair(paths[0], paths[1]);
  normalise_training(train_x, dir);
  return TensorDataset(train_x, train_y, train_y.max().item<int64_t>() + 1, name + "/train");
}

}  // namespace kdistill::data
