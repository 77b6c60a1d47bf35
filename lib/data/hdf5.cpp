#include "kdistill/data/hdf5.h"

#include <torch/torch.h>

#include "io/hdf5_util.h"
#include "kdistill/core/error.h"
#include "kdistill/io/atomic_file.h"
#include "kdistill/io/sha256.h"

namespace kdistill::data {

TensorDataset load_hdf5(const std::string& path, const std::string& features, const std::string& labels,
                        int64_t num_classes) {
  constexpr const char* fn = "load_hdf5";
  auto file = detail::open_h5(fn, path);
  auto x = detail::read_dataset(fn, file, path, features);
  auto y = detail::read_dataset(fn, file, path, labels);
  check(y.dim() == 1, fn, ": ", path, ":", labels, " must be 1-D [N], got shape ", y.sizes());
  check(!y.is_floating_point(), fn, ": ", path, ":", labels, " must hold integers, got ", y.scalar_type());
  check(x.size(0) == y.size(0), fn, ": ", path, ": '", features, "' has ", x.size(0), " rows but '", labels,
        "' has ", y.size(0));
  return TensorDataset(x.to(torch::kFloat), y, num_classes, path);
}

void save_hdf5(const TensorDataset& dataset, const std::string& path, const std::string& features,
               const std::string& labels) {
  detail::write_h5("save_hdf5", path, [&](H5::H5File& file) {
    detail::write_dataset(file, features, dataset.features().to(torch::kFloat));
    detail::write_dataset(file, labels, dataset.targets());
  });
}

std::string features_sha256(const TensorDataset& dataset) {
  auto f = dataset.features().contiguous().cpu();
  io::Sha256 h;
  const std::string header = std::string(c10::toString(f.scalar_type())) + c10::str(f.sizes());
  h.update(header.data(), header.size());
  h.update(f.data_ptr(), static_cast<size_t>(f.numel()) * f.element_size());
  return h.hex_digest();
}

}  // namespace kdistill::data
