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

}  // namespace kdistill::detail
