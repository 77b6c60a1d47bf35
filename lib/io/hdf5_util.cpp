#include "io/hdf5_util.h"

#include "core/huge_pages.h"
#include "io/hdf5_checked.h"

#include <filesystem>

#include <torch/torch.h>

#include "kdistill/core/error.h"
#include "kdistill/io/atomic_file.h"

namespace kdistill::detail {
namespace {

// HDF5 prints its own error stack to stderr by default; kdistill reports errors itself.
struct SilenceHdf5 {
  SilenceHdf5() { H5::Exception::dontPrint(); }
} silence;

torch::ScalarType to_torch(const H5::DataType& t, const std::string& where) {
  const auto cls = t.getClass();
  const size_t size = t.getSize();
  if (cls == H5T_FLOAT) {
    if (size == 2) return torch::kHalf;
    if (size == 4) return torch::kFloat;
    if (size == 8) return torch::kDouble;
  } else if (cls == H5T_INTEGER) {
    const bool is_signed = H5::IntType(t.getId()).getSign() != H5T_SGN_NONE;
    if (size == 1 && !is_signed) return torch::kUInt8;
    if (size == 1) return torch::kInt8;
    if (size == 2) return torch::kShort;
    if (size == 4) return torch::kInt;
    if (size == 8) return torch::kLong;
  }
  fail(where, " has an unsupported element type (class ", static_cast<int>(cls), ", ", size, " bytes)");
}

// IEEE half precision, as h5py writes float16 (HDF5 1.10 has no predefined type for it).
H5::FloatType half_type() {
  H5::FloatType t(H5::PredType::IEEE_F32LE);
  t.setFields(15, 10, 5, 0, 10);
  t.setSize(2);
  t.setEbias(15);
  return t;
}

H5::PredType to_h5(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return H5::PredType::NATIVE_FLOAT;
    case torch::kDouble: return H5::PredType::NATIVE_DOUBLE;
    case torch::kLong: return H5::PredType::NATIVE_INT64;
    case torch::kInt: return H5::PredType::NATIVE_INT32;
    case torch::kUInt8: return H5::PredType::NATIVE_UINT8;
    default: fail("write_dataset: unsupported dtype ", t);
  }
}

// The file type for `t`: IEEE half for float16, the native type otherwise.
H5::DataType file_type(torch::ScalarType t) {
  if (t == torch::kHalf) return half_type();
  return to_h5(t);
}

}  // namespace

H5::H5File open_h5(const std::string& who, const std::string& path) {
  check(std::filesystem::is_regular_file(path), who, ": ", path, " does not exist or is not a file");
  try {
    check(H5::H5File::isHdf5(path), who, ": ", path, " is not an HDF5 file");
    return H5::H5File(path, H5F_ACC_RDONLY);
  } catch (const H5::Exception& e) {
    fail(who, ": ", path, " cannot be opened as HDF5: ", e.getDetailMsg());
  }
}

bool has_dataset(const H5::H5File& file, const std::string& name) {
  try {
    return file.nameExists(name) && file.childObjType(name) == H5O_TYPE_DATASET;
  } catch (const H5::Exception&) {
    return false;
  }
}

torch::Tensor read_dataset(const std::string& who, const H5::H5File& file, const std::string& path,
                           const std::string& name) {
  check(has_dataset(file, name), who, ": ", path, " has no dataset '", name, "'");
  const std::string where = who + ": " + path + ":" + name;
  try {
    H5::DataSet ds = file.openDataSet(name);
    H5::DataSpace space = ds.getSpace();
    const int rank = space.getSimpleExtentNdims();
    check(rank >= 1, where, " is a scalar, expected an array");
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    space.getSimpleExtentDims(dims.data());
    auto dtype = to_torch(ds.getDataType(), where);
    if (dtype == torch::kInt8 || dtype == torch::kShort) dtype = torch::kInt;  // HDF5 widens on read
    if (dtype == torch::kHalf) dtype = torch::kFloat;
    check_stored(ds, dims, ds.getDataType().getSize(), path, where);  // stored bytes per element
    std::vector<int64_t> shape(dims.begin(), dims.end());
    auto out = detail::empty_on_huge_pages(shape, dtype);  // a data set, written once, in full
    if (out.numel() > 0) ds.read(out.data_ptr(), to_h5(dtype));
    return out;
  } catch (const H5::Exception& e) {
    fail(where, " cannot be read: ", e.getDetailMsg());
  }
}

void write_h5(const std::string& who, const std::string& path, const std::function<void(H5::H5File&)>& fill) {
  io::atomic_write(path, [&](const std::string& tmp) {
    try {
      H5::H5File file(tmp, H5F_ACC_TRUNC);
      fill(file);
    } catch (const H5::Exception& e) {
      fail(who, ": cannot write ", path, ": ", e.getDetailMsg());
    }
  });
}

H5::DataSet write_dataset(H5::Group& group, const std::string& name, const torch::Tensor& values) {
  auto v = values.contiguous().cpu();
  std::vector<hsize_t> dims(v.sizes().begin(), v.sizes().end());
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  H5::DSetCreatPropList props;
  if (v.numel() > 0) {
    std::vector<hsize_t> chunk = dims;
    // About 1 MiB chunks along the first dimension.
    const hsize_t row_bytes = static_cast<hsize_t>(v.numel() / std::max<int64_t>(1, v.size(0)) * v.element_size());
    chunk[0] = std::max<hsize_t>(1, std::min<hsize_t>(dims[0], (1u << 20) / std::max<hsize_t>(1, row_bytes)));
    props.setChunk(static_cast<int>(chunk.size()), chunk.data());
    props.setDeflate(4);
  }
  if (v.scalar_type() == torch::kHalf) {
    const auto type = half_type();
    H5::DataSet ds = group.createDataSet(name, type, space, props);
    if (v.numel() > 0) ds.write(v.data_ptr(), type);
    return ds;
  }
  const auto type = to_h5(v.scalar_type());
  H5::DataSet ds = group.createDataSet(name, type, space, props);
  if (v.numel() > 0) ds.write(v.data_ptr(), type);
  return ds;
}

void write_string_attr(H5::H5Object& obj, const std::string& name, const std::string& value) {
  H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
  type.setCset(H5T_CSET_UTF8);
  H5::Attribute attr = obj.createAttribute(name, type, H5::DataSpace(H5S_SCALAR));
  attr.write(type, value);
}

void write_int_attr(H5::H5Object& obj, const std::string& name, int64_t value) {
  obj.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace(H5S_SCALAR)).write(H5::PredType::NATIVE_INT64, &value);
}

void write_ints_attr(H5::H5Object& obj, const std::string& name, const std::vector<int64_t>& values) {
  const hsize_t dims[1] = {values.size()};
  obj.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace(1, dims))
      .write(H5::PredType::NATIVE_INT64, values.data());
}

void write_double_attr(H5::H5Object& obj, const std::string& name, double value) {
  obj.createAttribute(name, H5::PredType::IEEE_F64LE, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_DOUBLE, &value);
}

std::string read_string_attr(const std::string& where, const H5::H5Object& obj, const std::string& name) {
  try {
    if (!obj.attrExists(name)) return "";
    return read_string_attribute(obj.openAttribute(name), where + ": attribute '" + name + "'");
  } catch (const H5::Exception& e) {
    fail(where, ": attribute '", name, "' cannot be read: ", e.getDetailMsg());
  }
}

int64_t read_int_attr(const std::string& where, const H5::H5Object& obj, const std::string& name) {
  try {
    check(obj.attrExists(name), where, " has no attribute '", name, "'");
    auto attr = obj.openAttribute(name);
    check(attr.getTypeClass() == H5T_INTEGER && attr.getSpace().getSimpleExtentNpoints() == 1, where, ": attribute '",
          name, "' must be one integer");
    int64_t v = 0;
    attr.read(H5::PredType::NATIVE_INT64, &v);
    return v;
  } catch (const H5::Exception& e) {
    fail(where, ": attribute '", name, "' cannot be read: ", e.getDetailMsg());
  }
}

double read_double_attr(const std::string& where, const H5::H5Object& obj, const std::string& name) {
  try {
    check(obj.attrExists(name), where, " has no attribute '", name, "'");
    auto attr = obj.openAttribute(name);
    const auto cls = attr.getTypeClass();
    check((cls == H5T_FLOAT || cls == H5T_INTEGER) && attr.getSpace().getSimpleExtentNpoints() == 1, where,
          ": attribute '", name, "' must be one number");
    double v = 0;
    attr.read(H5::PredType::NATIVE_DOUBLE, &v);
    return v;
  } catch (const H5::Exception& e) {
    fail(where, ": attribute '", name, "' cannot be read: ", e.getDetailMsg());
  }
}

ChunkedRows::ChunkedRows(H5::Group& group, const std::string& name, torch::ScalarType dtype,
                         std::vector<int64_t> row_shape, int64_t rows, int64_t chunk_rows)
    : name_(name), dtype_(dtype), row_shape_(std::move(row_shape)), rows_(rows), chunk_rows_(chunk_rows) {
  check(rows >= 1 && chunk_rows >= 1 && chunk_rows <= rows, "ChunkedRows: ", name, ": need 1 <= chunk_rows (",
        chunk_rows, ") <= rows (", rows, ")");
  std::vector<hsize_t> dims{static_cast<hsize_t>(rows)}, chunk{static_cast<hsize_t>(chunk_rows)};
  for (auto d : row_shape_) {
    check(d >= 1, "ChunkedRows: ", name, ": a row dimension is ", d);
    dims.push_back(static_cast<hsize_t>(d));
    chunk.push_back(static_cast<hsize_t>(d));
  }
  H5::DSetCreatPropList props;
  props.setChunk(static_cast<int>(chunk.size()), chunk.data());
  props.setShuffle();  // bytes of equal significance together: int32 indices below 65536 pack to ~2 bytes
  props.setDeflate(4);
  ds_ = group.createDataSet(name, file_type(dtype), H5::DataSpace(static_cast<int>(dims.size()), dims.data()), props);
}

void ChunkedRows::append(const torch::Tensor& values) {
  check(values.dim() == static_cast<int64_t>(row_shape_.size()) + 1 && values.sizes().slice(1) == row_shape_,
        "ChunkedRows: ", name_, ": rows must be [n, ", torch::IntArrayRef(row_shape_), "], got ", values.sizes());
  check(written_ + pending_rows_ + values.size(0) <= rows_, "ChunkedRows: ", name_, ": more than ", rows_, " rows");
  if (values.size(0) == 0) return;
  pending_.push_back(values.detach().to(torch::kCPU, dtype_).contiguous());
  pending_rows_ += values.size(0);
  if (pending_rows_ < chunk_rows_) return;
  auto all = pending_.size() == 1 ? pending_[0] : torch::cat(pending_);
  const int64_t whole = pending_rows_ / chunk_rows_ * chunk_rows_;
  write(all.narrow(0, 0, whole));
  pending_.clear();
  pending_rows_ -= whole;
  if (pending_rows_ > 0) pending_.push_back(all.narrow(0, whole, pending_rows_).clone());
}

void ChunkedRows::finish() {
  if (pending_rows_ > 0) write(pending_.size() == 1 ? pending_[0] : torch::cat(pending_));
  pending_.clear();
  pending_rows_ = 0;
  check(written_ == rows_, "ChunkedRows: ", name_, ": ", written_, " of ", rows_, " rows were given");
}

void ChunkedRows::write(const torch::Tensor& rows) {
  auto v = rows.contiguous();
  std::vector<hsize_t> start(v.dim(), 0), count(v.sizes().begin(), v.sizes().end());
  start[0] = static_cast<hsize_t>(written_);
  H5::DataSpace file_space = ds_.getSpace();
  file_space.selectHyperslab(H5S_SELECT_SET, count.data(), start.data());
  H5::DataSpace mem_space(static_cast<int>(count.size()), count.data());
  ds_.write(v.data_ptr(), file_type(dtype_), mem_space, file_space);
  written_ += v.size(0);
}

double ChunkedRows::stored_bytes() const { return static_cast<double>(ds_.getStorageSize()); }

DatasetLayout dataset_layout(const std::string& where, const H5::DataSet& ds) {
  try {
    DatasetLayout out;
    H5::DataSpace space = ds.getSpace();
    const int rank = space.getSimpleExtentNdims();
    check(rank >= 1, where, " is a scalar, expected an array");
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    space.getSimpleExtentDims(dims.data());
    out.shape.assign(dims.begin(), dims.end());
    out.dtype = to_torch(ds.getDataType(), where);
    if (out.dtype == torch::kInt8 || out.dtype == torch::kShort) out.dtype = torch::kInt;
    if (out.dtype == torch::kHalf) out.dtype = torch::kFloat;
    H5::DSetCreatPropList props = ds.getCreatePlist();
    if (props.getLayout() == H5D_CHUNKED) {
      std::vector<hsize_t> chunk(static_cast<size_t>(rank));
      props.getChunk(rank, chunk.data());
      out.chunk_rows = static_cast<int64_t>(chunk[0]);
    }
    return out;
  } catch (const H5::Exception& e) {
    fail(where, " cannot be read: ", e.getDetailMsg());
  }
}

torch::Tensor read_rows(const std::string& where, const H5::DataSet& ds, const DatasetLayout& layout, int64_t begin,
                        int64_t count) {
  std::vector<int64_t> shape = layout.shape;
  check(begin >= 0 && count >= 0 && begin + count <= shape[0], where, ": rows [", begin, ", ", begin + count,
        ") are outside its ", shape[0]);
  shape[0] = count;
  auto out = torch::empty(shape, torch::TensorOptions().dtype(layout.dtype));
  if (out.numel() == 0) return out;
  try {
    std::vector<hsize_t> start(shape.size(), 0), dims(shape.begin(), shape.end());
    start[0] = static_cast<hsize_t>(begin);
    H5::DataSpace file_space = ds.getSpace();
    file_space.selectHyperslab(H5S_SELECT_SET, dims.data(), start.data());
    H5::DataSpace mem_space(static_cast<int>(dims.size()), dims.data());
    ds.read(out.data_ptr(), to_h5(layout.dtype), mem_space, file_space);
  } catch (const H5::Exception& e) {
    fail(where, ": rows [", begin, ", ", begin + count, ") cannot be read: ", e.getDetailMsg());
  }
  return out;
}

}  // namespace kdistill::detail
