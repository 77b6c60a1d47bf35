#pragma once
// Reads a teacher-logit cache from disk block by block, with a background thread reading ahead
// in the order training will ask for. Private to the library (HDF5 stays out of public headers).

#include <H5Cpp.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <torch/types.h>

#include "io/hdf5_util.h"

namespace kdistill::detail {

/// The rows of a block of about 256 KiB, rows of `row_bytes` each, of `rows` in all: the chunk
/// `cache_teacher` writes, and the block an unchunked cache is streamed in.
inline int64_t rows_per_block(int64_t row_bytes, int64_t rows) {
  return std::clamp<int64_t>((int64_t{1} << 18) / std::max<int64_t>(1, row_bytes), 1, rows);
}

/// Turns one block of a cache's datasets, as read, into what the teacher serves, and checks it
/// (throwing kdistill::Error naming the file, the dataset and the row). `first_row` is the
/// block's first row in the file.
using BlockDecoder = std::function<void(std::vector<torch::Tensor>& columns, int64_t first_row)>;

/// The datasets `names` of one cache file, read in blocks: a block is the rows of one HDF5 chunk
/// of the first dataset; when every dataset is chunked alike along its rows (a cache written by
/// kdistill is), a block costs one chunk of each. Unchunked datasets are read in blocks of about
/// 256 KiB.
///
/// Memory: at most `read_ahead_bytes` of decoded blocks are held ahead of training, plus the
/// blocks the current batch needs. `plan(order)` gives the rows in the order they will be asked
/// for; a background thread then reads blocks in order of first use and drops each after its
/// last. Rows asked for off the plan are read on the spot and not kept; rows of the plan never
/// asked for (up to 65,536 in a row) are skipped.
class CacheStream {
 public:
  /// Opens `path` and checks that the datasets exist and have as many rows as each other, and
  /// with `aligned` that they share their chunking (a block read otherwise decompresses parts of
  /// other chunks again and again); throws kdistill::Error naming the file and the dataset.
  CacheStream(std::string path, std::vector<std::string> names, BlockDecoder decode, int64_t read_ahead_bytes,
              bool aligned);
  ~CacheStream();
  CacheStream(const CacheStream&) = delete;
  CacheStream& operator=(const CacheStream&) = delete;

  int64_t rows() const { return rows_; }
  int64_t block_rows() const { return block_rows_; }
  /// Each dataset's shape (rows first), chunking and dtype as read.
  const std::vector<DatasetLayout>& layouts() const { return layouts_; }
  /// The stored (compressed) bytes of the datasets.
  double stored_bytes() const { return stored_bytes_; }

  /// Rows `indices` (int64, in [0, rows()): the caller checks) of every dataset, decoded, in the
  /// order given.
  std::vector<torch::Tensor> gather(const torch::Tensor& indices);
  /// The rows that will be asked for next, in order; replaces any earlier plan.
  void plan(const torch::Tensor& order);

  struct Stats {
    int64_t blocks_read = 0;   ///< by the background thread
    int64_t blocks_waited = 0; ///< read on the spot because the thread had not got to them
    int64_t peak_bytes = 0;    ///< most decoded bytes held at once
  };
  Stats stats() const;

 private:
  struct Block {
    std::vector<torch::Tensor> columns;
    int64_t bytes = 0;
  };
  std::shared_ptr<const Block> read_block(int64_t b);
  void run();
  void insert(int64_t b, std::shared_ptr<const Block> block);  // with m_ held
  void evict();                                                 // with m_ held
  /// Whether `idx` (contiguous int64) is the plan's next rows, at most kMaxSkip rows on from the
  /// cursor, which it then moves to them; with m_ held.
  bool follows_plan(const torch::Tensor& idx);
  static constexpr int64_t kMaxSkip = 1 << 16;

  std::string path_;
  std::vector<std::string> names_;
  BlockDecoder decode_;
  int64_t read_ahead_bytes_ = 0;
  H5::H5File file_;
  std::vector<H5::DataSet> sets_;
  std::vector<DatasetLayout> layouts_;
  int64_t rows_ = 0, block_rows_ = 0;
  double stored_bytes_ = 0;
  std::mutex io_;  // one HDF5 read at a time

  mutable std::mutex m_;
  std::condition_variable cv_;
  std::map<int64_t, std::shared_ptr<const Block>> loaded_;
  int64_t loaded_bytes_ = 0;
  torch::Tensor order_;                          // the plan: rows, in order
  int64_t cursor_ = 0;                           // how much of it has been served
  std::vector<int64_t> queue_;                   // its blocks, by first use
  size_t next_ = 0;                              // the next of them for the thread
  std::unordered_map<int64_t, int64_t> last_use_;
  int64_t in_flight_ = -1;
  std::exception_ptr error_;
  bool stop_ = false;
  Stats stats_;
  std::thread reader_;
};

}  // namespace kdistill::detail
