#include "kdistill/data/spec.h"

#include <vector>

#include "kdistill/core/error.h"
#include "kdistill/data/hdf5.h"
#include "kdistill/data/mnist.h"

namespace kdistill::data {

TensorDataset load_spec(const std::string& spec, const std::string& split) {
  check(split == "train" || split == "test", "--split: expected train or test, got \"", split, "\"");
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    auto colon = spec.find(':', start);
    parts.push_back(spec.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (parts.size() == 1 || parts[0] == "idx") {
    const auto dir = parts.size() == 1 ? parts[0] : spec.substr(4);
    return load_mnist_split(dir, split, "idx");
  }
  if (parts[0] == "hdf5") {
    check(parts.size() == 2 || parts.size() == 4, "--data: expected hdf5:FILE or hdf5:FILE:FEATURES:LABELS, got \"",
          spec, "\"");
    return parts.size() == 2 ? load_hdf5(parts[1]) : load_hdf5(parts[1], parts[2], parts[3]);
  }
  fail("--data: expected idx:DIR, hdf5:FILE[:FEATURES:LABELS] or a directory, got \"", spec, "\"");
}

}  // namespace kdistill::data
