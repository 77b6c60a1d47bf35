#include "kdistill/data/mnist.h"

#include <filesystem>
#include <vector>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/data/idx.h"

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

}  // namespace

ImageSplits load_mnist_family(const std::string& dir, const std::string& name) {
  const std::vector<std::string> stems = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
  std::vector<std::string> paths, looked;
  for (const auto& s : stems) paths.push_back(find_file(dir, s, looked));
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
  auto load = [&](int image_idx, int label_idx, const std::string& split) {
    auto images = read_idx(paths[image_idx]);
    auto labels = read_idx(paths[label_idx]);
    check(images.dim() == 3, "load_mnist_family: ", paths[image_idx], " must hold images [N, H, W], got shape ",
          images.sizes());
    check(labels.dim() == 1, "load_mnist_family: ", paths[label_idx], " must hold labels [N], got shape ",
          labels.sizes());
    check(images.size(0) == labels.size(0), "load_mnist_family: ", paths[image_idx], " has ", images.size(0),
          " images but ", paths[label_idx], " has ", labels.size(0), " labels");
    return std::make_pair(images.unsqueeze(1).to(torch::kFloat).div_(255.0f), labels.to(torch::kLong));
  };
  auto [train_x, train_y] = load(0, 1, "train");
  auto [test_x, test_y] = load(2, 3, "test");
  check(train_x.sizes().slice(1) == test_x.sizes().slice(1), "load_mnist_family: training images are ",
        train_x.sizes().slice(1), " but test images are ", test_x.sizes().slice(1));
  ImageSplits out;
  out.mean = train_x.mean().item<double>();
  out.std = train_x.std().item<double>();
  check(out.std > 0, "load_mnist_family: training images in ", dir, " are constant");
  train_x.sub_(out.mean).div_(out.std);
  test_x.sub_(out.mean).div_(out.std);
  // Class count from the training labels: a test split that lacks a class must not shrink C.
  const int64_t classes = train_y.max().item<int64_t>() + 1;
  out.train = TensorDataset(train_x, train_y, classes, name + "/train");
  out.test = TensorDataset(test_x, test_y, classes, name + "/test");
  return out;
}

}  // namespace kdistill::data
