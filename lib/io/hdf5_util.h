#pragma once

// HDF5 helpers shared by the data readers, the teacher-logit cache and the runtime export.
// Private to the library: HDF5 never appears in public headers.

#include <H5Cpp.h>

#include <functional>
#include <string>
#include <vector>

#include <torch/types.h>

namespace kdistill::detail {

/// Opens an HDF5 file read-only; throws kdistill::Error naming `who` and the path on failure.
H5::H5File open_h5(const std::string& who, const std::string& path);

/// Whether `file` has a dataset at `name`.
bool has_dataset(const H5::H5File& file, const std::string& name);

/// Reads a whole dataset (integer or floating point) into a CPU tensor of its own dtype (int8 and
/// int16 widened to int32, float16 to float32).
torch::Tensor read_dataset(const std::string& who, const H5::H5File& file, const std::string& path,
                           const std::string& name);

/// Creates the HDF5 file `path` atomically (io::atomic_write) and lets `fill` write into it;
/// HDF5's own exceptions become kdistill::Error naming `who` and the path.
void write_h5(const std::string& who, const std::string& path, const std::function<void(H5::H5File&)>& fill);

/// Writes `values` (float16, float32, float64, int64, int32 or uint8) as a chunked, gzip-compressed
/// dataset of `group` (a file is its root group). float16 is IEEE half, as h5py stores it;
/// `read_dataset` reads it back as float32.
H5::DataSet write_dataset(H5::Group& group, const std::string& name, const torch::Tensor& values);

/// A dataset of `rows` rows of shape `row_shape`, filled batch by batch without holding it whole:
/// chunks of `chunk_rows` rows (byte shuffle, then gzip), each written once, when complete. The
/// rows of a teacher-logit cache's datasets share their chunking, so a reader takes one chunk
/// of every dataset together (see `CacheStream`).
class ChunkedRows {
 public:
  /// `dtype`: float16, float32, int32 or int64.
  ChunkedRows(H5::Group& group, const std::string& name, torch::ScalarType dtype, std::vector<int64_t> row_shape,
              int64_t rows, int64_t chunk_rows);
  /// Appends `values` (`[n, row_shape...]`, converted to the dataset's dtype); throws
  /// kdistill::Error when the shape differs or more than `rows` rows arrive.
  void append(const torch::Tensor& values);
  /// Writes the last, partial chunk; throws kdistill::Error unless exactly `rows` rows arrived.
  void finish();
  /// The stored (compressed) bytes so far.
  double stored_bytes() const;

 private:
  void write(const torch::Tensor& rows);
  H5::DataSet ds_;
  std::string name_;
  torch::ScalarType dtype_;
  std::vector<int64_t> row_shape_;
  int64_t rows_ = 0, chunk_rows_ = 0, written_ = 0;
  std::vector<torch::Tensor> pending_;
  int64_t pending_rows_ = 0;
};

/// The shape, the rows per chunk along the first dimension (0 when not chunked) and the torch
/// dtype `read_rows` gives of dataset `name`; throws kdistill::Error starting with `where`.
struct DatasetLayout {
  std::vector<int64_t> shape;
  int64_t chunk_rows = 0;
  torch::ScalarType dtype = torch::kFloat;
};
DatasetLayout dataset_layout(const std::string& where, const H5::DataSet& ds);
/// Rows [begin, begin + count) of `ds` as a CPU tensor of `layout.dtype`; HDF5's failures (a
/// truncated or corrupt chunk) throw kdistill::Error starting with `where`.
torch::Tensor read_rows(const std::string& where, const H5::DataSet& ds, const DatasetLayout& layout, int64_t begin,
                        int64_t count);

/// Attributes: a UTF-8 string, a little-endian int64 scalar or vector, an IEEE float64 scalar.
void write_string_attr(H5::H5Object& obj, const std::string& name, const std::string& value);
void write_int_attr(H5::H5Object& obj, const std::string& name, int64_t value);
void write_ints_attr(H5::H5Object& obj, const std::string& name, const std::vector<int64_t>& values);
void write_double_attr(H5::H5Object& obj, const std::string& name, double value);
/// The string attribute `name` of `obj`, or "" when there is none; an attribute that is not a
/// readable string throws kdistill::Error starting with `where` (found by fuzz_hdf5: HDF5's own
/// exception used to escape).
std::string read_string_attr(const std::string& where, const H5::H5Object& obj, const std::string& name);
/// The integer attribute `name` of `obj`; throws kdistill::Error starting with `where` when it is
/// missing or is not one integer.
int64_t read_int_attr(const std::string& where, const H5::H5Object& obj, const std::string& name);
/// The numeric attribute `name` of `obj` as a double; throws like `read_int_attr`.
double read_double_attr(const std::string& where, const H5::H5Object& obj, const std::string& name);

}  // namespace kdistill::detail
