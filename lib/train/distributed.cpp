#include "kdistill/train/distributed.h"

// The Gloo process group's header is guarded by USE_C10D_GLOO, and includes Gloo's own headers
// (Debian: libgloo-dev; libtorch itself already links libgloo).
#if __has_include(<gloo/config.h>) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#define KDISTILL_HAVE_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
// NCCL: only a CUDA build of libtorch has it, and its header is guarded by USE_C10D_NCCL.
#if defined(KDISTILL_WITH_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>) && \
    __has_include(<nccl.h>)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#define KDISTILL_HAVE_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <spdlog/spdlog.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include "kdistill/core/error.h"
#include "kdistill/core/logging.h"

namespace kdistill {
namespace {

// PyTorch 2 split the process group into a front end and per-device backends; the collectives
// kdistill calls have the same signatures on both.
#if TORCH_VERSION_MAJOR >= 2
using Backend = c10d::Backend;
#else
using Backend = c10d::ProcessGroup;
#endif

int64_t env_integer(const char* name, int64_t fallback, int64_t lo, int64_t hi) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v, &end, 10);
  check(errno == 0 && end != v && *end == '\0' && x >= lo && x <= hi, "environment variable ", name, "='", v,
        "' is not an integer in [", lo, ", ", hi, "]");
  return x;
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

// Liveness in groups of more than two ranks, where a failed collective does not say which peer
// stopped: every rank adds 1 to its own counter in the store every kBeat, from a thread with its
// own connection. A rank whose collective failed reads every counter twice, kSilence apart, and
// names the ranks whose counters did not move.
constexpr auto kBeat = std::chrono::milliseconds(250);
constexpr auto kSilence = std::chrono::milliseconds(2000);
// The heartbeat's and the roll call's connections give up after this: a stopped store must not
// hold a failing rank, or a rank's exit, for the group's whole timeout.
constexpr auto kStoreWait = std::chrono::milliseconds(2000);

std::string beat_key(int64_t rank) { return "kdistill/beat/" + std::to_string(rank); }

}  // namespace

// Where the store is, to open more connections to it.
struct StoreAddress {
  std::string host;
  uint16_t port = 0;
  std::string prefix;  // with a launcher's store: the attempt's prefix

  c10::intrusive_ptr<c10d::Store> connect() const {
    c10d::TCPStoreOptions o;
    o.port = port;
    o.isServer = false;
    o.waitWorkers = false;
    o.timeout = kStoreWait;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(host, o);
    if (!prefix.empty()) store = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
    return store;
  }
};

class Heartbeat {
 public:
  Heartbeat(const StoreAddress& address, int64_t rank) {
    thread_ = std::thread([this, address, rank] {
      try {
        auto store = address.connect();
        const auto key = beat_key(rank);
        std::unique_lock<std::mutex> lock(mutex_);
        while (!stop_) {
          lock.unlock();
          store->add(key, 1);
          lock.lock();
          wake_.wait_for(lock, kBeat, [this] { return stop_; });
        }
      } catch (const std::exception& e) {  // the store went away: the others will see this rank go quiet
        logger()->debug("heartbeat of rank {} stopped: {}", rank, first_line(e.what()));
      }
    });
  }
  ~Heartbeat() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

int64_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  check(fd >= 0, "cannot open a socket: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;  // the kernel picks
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  const int err = errno;
  ::close(fd);
  check(ok, "cannot find a free port on 127.0.0.1: ", std::strerror(err));
  return ntohs(addr.sin_port);
}

DistributedOptions distributed_from_env(const DistributedOptions& defaults) {
  auto o = defaults;
  o.world_size(env_integer("WORLD_SIZE", o.world_size(), 1, 1 << 20));
  o.rank(env_integer("RANK", o.rank(), 0, o.world_size() - 1));
  o.local_rank(env_integer("LOCAL_RANK", o.rank(), 0, o.world_size() - 1));
  if (const char* addr = std::getenv("MASTER_ADDR"); addr != nullptr && *addr != '\0') o.master_addr(addr);
  o.master_port(env_integer("MASTER_PORT", o.master_port(), 1, 65535));
  if (const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE"); agent != nullptr) {
    o.launcher_store(std::string(agent) == "True");
  }
  o.restart_count(env_integer("TORCHELASTIC_RESTART_COUNT", o.restart_count(), 0, 1 << 30));
  return o;
}

struct ProcessGroup::Impl {
  int64_t rank = 0, size = 1;
  std::string backend;
  double timeout_s = 0;
  torch::Device device{torch::kCPU};  // where NCCL's collectives run (Gloo: the CPU)
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Backend> group;
  StoreAddress address;
  bool serves_store = false;
  std::unique_ptr<Heartbeat> heartbeat;  // with more than two ranks

  // Which peers stopped, for a failed collective's message. Two ranks: the other one. More: those
  // whose heartbeat did not move in kSilence ("" if every peer still beats). A store that does
  // not answer is named too: it lives in rank 0, unless a launcher serves it.
  std::string stopped_peers() const {
    if (size == 2) return "rank " + std::to_string(1 - rank) + " stopped";
    try {
      auto roll = address.connect();
      auto read = [&] {
        std::vector<int64_t> beats;
        for (int64_t r = 0; r < size; ++r) beats.push_back(r == rank ? 0 : roll->add(beat_key(r), 0));
        return beats;
      };
      const auto before = read();
      std::this_thread::sleep_for(kSilence);
      const auto after = read();
      std::string quiet;
      int64_t count = 0;
      for (int64_t r = 0; r < size; ++r) {
        if (r == rank || after[r] != before[r]) continue;
        quiet += (quiet.empty() ? "" : ", ") + std::to_string(r);
        ++count;
      }
      if (count == 0) return "";
      return (count == 1 ? "rank " : "ranks ") + quiet + " stopped (no heartbeat for " +
             std::to_string(kSilence.count() / 1000) + " s)";
    } catch (const std::exception&) {
      if (serves_store) return "another rank stopped";  // this rank's own store did not answer: no names
      if (address.prefix.empty()) return "rank 0 stopped (the store it serves does not answer)";
      return "the launcher's store at " + address.host + ":" + std::to_string(address.port) + " does not answer";
    }
  }

  // `t` as the collectives take it: dense, contiguous, on the group's device (a copy if not).
  torch::Tensor stage(const torch::Tensor& t) const {
    return t.device() == device && t.is_contiguous() ? t : t.to(device).contiguous();
  }

  // Waits for `work`, turning a failure or a timeout into one line that names this rank.
  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
    try {
      work->wait();
    } catch (const std::exception& e) {
      const auto* c10 = dynamic_cast<const c10::Error*>(&e);
      const std::string cause = first_line(c10 != nullptr ? c10->what_without_backtrace() : e.what());
      const std::string stopped = stopped_peers();
      if (stopped.empty()) {
        fail("rank ", rank, " of ", size, ": ", what, " failed: another rank did not arrive within the ", timeout_s,
             " s timeout, though every rank still beats: one is stuck or slow (", backend, ": ", cause, ")");
      }
      fail("rank ", rank, " of ", size, ": ", what, " failed: ", stopped, ", or did not arrive within the ", timeout_s,
           " s timeout (", backend, ": ", cause, ")");
    }
  }
};

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::create(const DistributedOptions& o, torch::Device device) {
  check(o.world_size() >= 1, "ProcessGroup: world_size must be >= 1, got ", o.world_size());
  check(o.rank() >= 0 && o.rank() < o.world_size(), "ProcessGroup: rank ", o.rank(), " is outside [0, ",
        o.world_size(), ")");
  check(o.timeout_s() > 0, "ProcessGroup: timeout_s must be > 0, got ", o.timeout_s());
  check(o.master_port() >= 1 && o.master_port() <= 65535, "ProcessGroup: master_port must be in [1, 65535], got ",
        o.master_port());
  auto impl = std::make_unique<Impl>();
  impl->rank = o.rank();
  impl->size = o.world_size();
  impl->timeout_s = o.timeout_s();
  impl->backend = o.backend().empty() ? (device.is_cuda() ? "nccl" : "gloo") : o.backend();
  check(impl->backend == "gloo" || impl->backend == "nccl", "ProcessGroup: backend must be gloo or nccl, got '",
        impl->backend, "'");
  impl->device = impl->backend == "nccl" ? device : torch::Device(torch::kCPU);
  const auto timeout = to_ms(o.timeout_s());

  impl->address = StoreAddress{o.master_addr(), static_cast<uint16_t>(o.master_port()),
                               o.launcher_store() ? "/worker/attempt_" + std::to_string(o.restart_count()) : ""};
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<uint16_t>(o.master_port());
  store_options.isServer = o.rank() == 0 && !o.launcher_store();
  store_options.multiTenant = true;  // as PyTorch's workers: another group may share rank 0's server
  store_options.numWorkers = static_cast<size_t>(o.world_size());
  store_options.waitWorkers = true;
  store_options.timeout = timeout;
  impl->serves_store = store_options.isServer;
  try {
    impl->store = c10::make_intrusive<c10d::TCPStore>(o.master_addr(), store_options);
    if (!impl->address.prefix.empty()) {
      impl->store = c10::make_intrusive<c10d::PrefixStore>(impl->address.prefix, impl->store);
    }
  } catch (const std::exception& e) {
    const auto* c10 = dynamic_cast<const c10::Error*>(&e);
    fail("rank ", o.rank(), " of ", o.world_size(), ": the rendezvous at ", o.master_addr(), ":", o.master_port(),
         " failed within the ", o.timeout_s(), " s timeout (",
         first_line(c10 != nullptr ? c10->what_without_backtrace() : e.what()),
         "); check MASTER_ADDR/MASTER_PORT, and that every rank was started");
  }

  if (impl->backend == "gloo") {
#ifdef KDISTILL_HAVE_GLOO
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // Bind where the others can reach us: GLOO_SOCKET_IFNAME as in PyTorch; loopback for a
    // single-host group, so that its traffic never leaves 127.0.0.1; else this host's name.
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname != nullptr && *ifname != '\0') {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (o.master_addr() == "127.0.0.1" || o.master_addr() == "localhost") {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = 2;  // measured: 1 thread ran MLP-64 steps 1.3x slower on 2 cores
    try {
      impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, static_cast<int>(o.rank()),
                                                                static_cast<int>(o.world_size()), options);
    } catch (const std::exception& e) {
      const auto* c10 = dynamic_cast<const c10::Error*>(&e);
      fail("rank ", o.rank(), " of ", o.world_size(), ": connecting the Gloo process group failed (",
           first_line(c10 != nullptr ? c10->what_without_backtrace() : e.what()), ")");
    }
#else
    fail("ProcessGroup: this kdistill was built without Gloo (install libgloo-dev and rebuild)");
#endif
  } else {
#ifdef KDISTILL_HAVE_NCCL
    check(device.is_cuda(), "ProcessGroup: the nccl backend needs a CUDA device, got ", device.str());
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    impl->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, static_cast<int>(o.rank()),
                                                              static_cast<int>(o.world_size()), options);
#else
    fail("ProcessGroup: the nccl backend needs a CUDA build of libtorch with NCCL; this one has none (use gloo)");
#endif
  }
  if (impl->size > 2) impl->heartbeat = std::make_unique<Heartbeat>(impl->address, impl->rank);
  logger()->debug("rank {} of {} joined the {} group at {}:{}", o.rank(), o.world_size(), impl->backend,
                 o.master_addr(), o.master_port());
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

bool ProcessGroup::has_backend(const std::string& name) {
#ifdef KDISTILL_HAVE_GLOO
  if (name == "gloo") return true;
#endif
#ifdef KDISTILL_HAVE_NCCL
  if (name == "nccl") return true;
#endif
  return false;
}

int64_t ProcessGroup::rank() const { return impl_->rank; }
int64_t ProcessGroup::size() const { return impl_->size; }
const std::string& ProcessGroup::backend() const { return impl_->backend; }
double ProcessGroup::timeout_s() const { return impl_->timeout_s; }

struct ProcessGroup::Pending::Impl {
  ProcessGroup::Impl* group = nullptr;
  std::string what;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  std::vector<torch::Tensor> tensors, staged;  // the caller's, and what the collectives hold
};

ProcessGroup::Pending::Pending() = default;
ProcessGroup::Pending::Pending(Pending&&) noexcept = default;
ProcessGroup::Pending& ProcessGroup::Pending::operator=(Pending&& other) noexcept {
  if (this != &other) {
    try {
      wait();
    } catch (...) {  // NOLINT(bugprone-empty-catch): moved over without a wait; the work is dropped
    }
    impl_ = std::move(other.impl_);
  }
  return *this;
}

ProcessGroup::Pending::~Pending() {
  try {
    wait();
  } catch (const std::exception& e) {
    logger()->debug("an abandoned collective failed: {}", first_line(e.what()));
  }
}

void ProcessGroup::Pending::wait() {
  if (!impl_) return;
  auto impl = std::move(impl_);  // once, even if a wait throws
  for (auto& w : impl->works) impl->group->wait(w, impl->what);
  for (size_t i = 0; i < impl->tensors.size(); ++i) {
    if (!impl->staged[i].is_same(impl->tensors[i])) impl->tensors[i].copy_(impl->staged[i]);
  }
}

ProcessGroup::Pending ProcessGroup::all_reduce_sum_async(const std::vector<torch::Tensor>& tensors,
                                                         const std::string& what) {
  Pending pending;
  if (impl_->size == 1) return pending;
  auto p = std::make_unique<Pending::Impl>();
  p->group = impl_.get();
  p->what = what;
  p->tensors = tensors;
  p->works.reserve(tensors.size());
  for (const auto& t : tensors) {
    p->staged.push_back(impl_->stage(t));
    std::vector<torch::Tensor> one{p->staged.back()};
    p->works.push_back(impl_->group->allreduce(one));
  }
  pending.impl_ = std::move(p);
  return pending;
}

void ProcessGroup::all_reduce_sum(std::vector<torch::Tensor>& tensors, const std::string& what) {
  all_reduce_sum_async(tensors, what).wait();
}

void ProcessGroup::broadcast(std::vector<torch::Tensor>& tensors, int64_t root, const std::string& what) {
  if (impl_->size == 1) return;
  c10d::BroadcastOptions options;
  options.rootRank = root;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (auto& t : tensors) {
    std::vector<torch::Tensor> one{impl_->stage(t)};
    works.push_back(impl_->group->broadcast(one, options));
    impl_->wait(works.back(), what);
    if (!one[0].is_same(t)) t.copy_(one[0]);
  }
}

torch::Tensor ProcessGroup::all_gather_rows(const torch::Tensor& rows, const std::string& what) {
  if (impl_->size == 1) return rows;
  const auto staged = impl_->stage(rows);
  // Gloo gathers equal shapes: exchange the row counts, pad to the largest, trim after.
  auto counts = torch::zeros({impl_->size}, torch::kLong);
  counts[impl_->rank] = rows.size(0);
  std::vector<torch::Tensor> c{counts};
  all_reduce_sum(c, what + " (row counts)");
  const int64_t most = counts.max().item<int64_t>();
  auto shape = rows.sizes().vec();
  shape[0] = most;
  auto padded = torch::zeros(shape, staged.options());
  padded.narrow(0, 0, rows.size(0)).copy_(staged);
  std::vector<std::vector<torch::Tensor>> outputs(1);
  for (int64_t r = 0; r < impl_->size; ++r) outputs[0].push_back(torch::empty(shape, staged.options()));
  std::vector<torch::Tensor> inputs{padded};
  impl_->wait(impl_->group->allgather(outputs, inputs), what);
  std::vector<torch::Tensor> parts;
  for (int64_t r = 0; r < impl_->size; ++r) parts.push_back(outputs[0][r].narrow(0, 0, counts[r].item<int64_t>()));
  return torch::cat(parts).to(rows.device());
}

void ProcessGroup::barrier(const std::string& what) {
  if (impl_->size == 1) return;
  // A one-element all-reduce: Gloo's barrier does not honour the timeout in every version.
  std::vector<torch::Tensor> one{torch::zeros({1}, torch::TensorOptions().device(impl_->device))};
  all_reduce_sum(one, what);
}

}  // namespace kdistill
