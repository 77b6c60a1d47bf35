#include "teachers/cache_stream.h"

#include <algorithm>

#include <torch/torch.h>

#include "io/hdf5_checked.h"
#include "kdistill/core/error.h"

namespace kdistill::detail {

CacheStream::CacheStream(std::string path, std::vector<std::string> names, BlockDecoder decode,
                         int64_t read_ahead_bytes, bool aligned)
    : path_(std::move(path)), names_(std::move(names)), decode_(std::move(decode)),
      read_ahead_bytes_(read_ahead_bytes) {
  const std::string who = "CachedTeacher";
  check(read_ahead_bytes_ >= 0, who, ": read-ahead must be >= 0 bytes, got ", read_ahead_bytes_);
  file_ = open_h5(who, path_);
  int64_t row_bytes = 0;
  for (const auto& name : names_) {
    const std::string where = who + ": " + path_ + ":" + name;
    check(has_dataset(file_, name), who, ": ", path_, " has no dataset '", name, "'");
    try {
      sets_.push_back(file_.openDataSet(name));
    } catch (const H5::Exception& e) {
      fail(where, " cannot be opened: ", e.getDetailMsg());
    }
    auto layout = dataset_layout(where, sets_.back());
    const auto& first = layouts_.empty() ? layout : layouts_.front();
    check(layout.shape[0] > 0, where, " has no rows");
    check(layout.shape[0] == first.shape[0], where, " has ", layout.shape[0], " rows but ", names_.front(), " has ",
          first.shape[0]);
    check(!aligned || layout.chunk_rows == first.chunk_rows, where, " is chunked in blocks of ", layout.chunk_rows, " rows but ",
          names_.front(), " in blocks of ", first.chunk_rows,
          " (0: not chunked); a streamed cache needs its datasets chunked alike along the rows");
    std::vector<hsize_t> dims(layout.shape.begin(), layout.shape.end());
    const size_t element = layout.dtype == torch::kLong || layout.dtype == torch::kDouble ? 8 : 4;
    check_stored(sets_.back(), dims, element, path_, where);
    stored_bytes_ += static_cast<double>(sets_.back().getStorageSize());
    int64_t per_row = static_cast<int64_t>(element);
    for (size_t d = 1; d < layout.shape.size(); ++d) per_row *= layout.shape[d];
    row_bytes += per_row;
    layouts_.push_back(std::move(layout));
  }
  check(!layouts_.empty(), who, ": no dataset to stream from ", path_);
  rows_ = layouts_.front().shape[0];
  block_rows_ = layouts_.front().chunk_rows;
  if (block_rows_ == 0) block_rows_ = rows_per_block(row_bytes, rows_);
  reader_ = std::thread([this] { run(); });
}

CacheStream::~CacheStream() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  reader_.join();
}

std::shared_ptr<const CacheStream::Block> CacheStream::read_block(int64_t b) {
  const int64_t begin = b * block_rows_, count = std::min(block_rows_, rows_ - begin);
  auto block = std::make_shared<Block>();
  {
    std::lock_guard<std::mutex> io(io_);
    for (size_t i = 0; i < sets_.size(); ++i) {
      block->columns.push_back(read_rows("CachedTeacher: " + path_ + ":" + names_[i], sets_[i], layouts_[i], begin, count));
    }
  }
  decode_(block->columns, begin);
  for (const auto& c : block->columns) block->bytes += static_cast<int64_t>(c.nbytes());
  return block;
}

void CacheStream::insert(int64_t b, std::shared_ptr<const Block> block) {
  if (loaded_.count(b) != 0) return;
  loaded_bytes_ += block->bytes;
  loaded_.emplace(b, std::move(block));
  stats_.peak_bytes = std::max(stats_.peak_bytes, loaded_bytes_);
}

void CacheStream::evict() {
  for (auto it = loaded_.begin(); it != loaded_.end();) {
    auto last = last_use_.find(it->first);
    if (last == last_use_.end() || last->second < cursor_) {
      loaded_bytes_ -= it->second->bytes;
      it = loaded_.erase(it);
    } else {
      ++it;
    }
  }
}

void CacheStream::run() {
  std::unique_lock<std::mutex> lock(m_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || (!error_ && next_ < queue_.size() && loaded_bytes_ < read_ahead_bytes_); });
    if (stop_) return;
    const int64_t b = queue_[next_++];
    auto last = last_use_.find(b);
    if (loaded_.count(b) != 0 || last == last_use_.end() || last->second < cursor_) continue;  // read, or served
    in_flight_ = b;
    lock.unlock();
    std::shared_ptr<const Block> block;
    std::exception_ptr error;
    try {
      block = read_block(b);
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    in_flight_ = -1;
    if (error) {
      error_ = error;
    } else {
      ++stats_.blocks_read;
      auto last = last_use_.find(b);
      if (last != last_use_.end() && last->second >= cursor_) insert(b, std::move(block));  // the plan still wants it
    }
    cv_.notify_all();
  }
}

void CacheStream::plan(const torch::Tensor& order) {
  auto rows = order.to(torch::kCPU, torch::kLong).contiguous().clone();
  check(rows.dim() == 1, "CachedTeacher: ", path_, ": a plan must be 1-D rows, got shape ", rows.sizes());
  std::vector<int64_t> queue;
  std::unordered_map<int64_t, int64_t> last_use;
  const auto* r = rows.data_ptr<int64_t>();
  for (int64_t i = 0; i < rows.numel(); ++i) {
    check(r[i] >= 0 && r[i] < rows_, "CachedTeacher: ", path_, ": row ", r[i], " is outside [0, ", rows_, ")");
    const int64_t b = r[i] / block_rows_;
    if (last_use.count(b) == 0) queue.push_back(b);
    last_use[b] = i;
  }
  {
    std::lock_guard<std::mutex> lock(m_);
    order_ = std::move(rows);
    cursor_ = 0;
    queue_ = std::move(queue);
    next_ = 0;
    last_use_ = std::move(last_use);
    evict();
  }
  cv_.notify_all();
}

bool CacheStream::follows_plan(const torch::Tensor& idx) {
  const int64_t n = idx.numel(), total = order_.defined() ? order_.numel() : 0;
  if (n == 0 || cursor_ + n > total) return n == 0 && order_.defined();
  // Rows the trainer skipped (a micro-batch of padding alone asks for nothing) move the cursor on.
  const auto* o = order_.data_ptr<int64_t>();
  const int64_t first = idx.data_ptr<int64_t>()[0];
  for (int64_t p = cursor_; p + n <= total && p < cursor_ + kMaxSkip; ++p) {
    if (o[p] == first && torch::equal(order_.narrow(0, p, n), idx)) {
      cursor_ = p;
      return true;
    }
  }
  return false;
}

std::vector<torch::Tensor> CacheStream::gather(const torch::Tensor& indices) {
  auto idx = indices.to(torch::kCPU, torch::kLong).contiguous();
  check(idx.dim() == 1, "CachedTeacher: ", path_, ": rows must be 1-D, got shape ", idx.sizes());
  const int64_t n = idx.numel();
  auto block_of = idx.div(block_rows_, "floor");
  auto needed = std::get<0>(at::_unique(block_of, /*sorted=*/true));
  const auto* nb = needed.data_ptr<int64_t>();
  std::vector<std::shared_ptr<const Block>> blocks;
  {
    std::unique_lock<std::mutex> lock(m_);
    const bool on_plan = follows_plan(idx);
    for (int64_t j = 0; j < needed.numel(); ++j) {
      const int64_t b = nb[j];
      cv_.wait(lock, [&] { return error_ || loaded_.count(b) != 0 || in_flight_ != b; });
      if (error_) std::rethrow_exception(error_);
      if (auto it = loaded_.find(b); it != loaded_.end()) {
        blocks.push_back(it->second);
        continue;
      }
      lock.unlock();
      auto block = read_block(b);
      lock.lock();
      ++stats_.blocks_waited;
      auto last = last_use_.find(b);
      if (on_plan && last != last_use_.end() && last->second >= cursor_ + n) insert(b, block);
      blocks.push_back(std::move(block));
    }
    if (on_plan) {
      cursor_ += n;
      evict();
      cv_.notify_all();
    }
  }
  std::vector<torch::Tensor> out;
  if (blocks.empty()) {  // no rows: empty columns, decoded to the dtypes full ones have
    for (size_t c = 0; c < names_.size(); ++c) {
      auto shape = layouts_[c].shape;
      shape[0] = 0;
      out.push_back(torch::empty(shape, torch::TensorOptions().dtype(layouts_[c].dtype)));
    }
    decode_(out, 0);
    return out;
  }
  for (size_t c = 0; c < names_.size(); ++c) {
    const auto& proto = blocks.front()->columns[c];
    auto shape = proto.sizes().vec();
    shape[0] = n;
    auto column = torch::empty(shape, proto.options());
    for (size_t j = 0; j < blocks.size(); ++j) {
      auto pos = (block_of == nb[j]).nonzero().squeeze(1);
      auto local = idx.index_select(0, pos) - nb[j] * block_rows_;
      column.index_copy_(0, pos, blocks[j]->columns[c].index_select(0, local));
    }
    out.push_back(std::move(column));
  }
  return out;
}

CacheStream::Stats CacheStream::stats() const {
  std::lock_guard<std::mutex> lock(m_);
  return stats_;
}

}  // namespace kdistill::detail
