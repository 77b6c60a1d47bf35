#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#pragma GCC visibility push(default)  // the exported API: docs/architecture.md
namespace kdistill {

/// Where this process sits in a data-parallel group, and how the group meets. The defaults are
/// one process; `distributed_from_env()` fills them from the variables `torchrun` sets.
///
/// Example:
/// ```
/// auto o = kdistill::DistributedOptions().rank(1).world_size(2).master_port(29511).timeout_s(60);
/// ```
struct DistributedOptions {
  /// This process's rank, in [0, world_size).
  TORCH_ARG(int64_t, rank) = 0;
  /// The number of processes.
  TORCH_ARG(int64_t, world_size) = 1;
  /// This process's rank on its host (chooses the CUDA device `cuda:local_rank` under NCCL).
  TORCH_ARG(int64_t, local_rank) = 0;
  /// Rank 0's host: it serves the rendezvous store (c10d `TCPStore`) on `master_port`.
  TORCH_ARG(std::string, master_addr) = "127.0.0.1";
  TORCH_ARG(int64_t, master_port) = 29500;
  /// The launcher serves the store at master_addr:master_port (torchrun's agent does, and says so
  /// with TORCHELASTIC_USE_AGENT_STORE=True): every rank connects to it, under the key prefix of
  /// its restart attempt, as PyTorch's workers do.
  TORCH_ARG(bool, launcher_store) = false;
  /// The launcher's restart attempt (TORCHELASTIC_RESTART_COUNT), with `launcher_store`.
  TORCH_ARG(int64_t, restart_count) = 0;
  /// "gloo" (CPU tensors), "nccl" (CUDA tensors), or empty: NCCL for a CUDA device, Gloo otherwise.
  TORCH_ARG(std::string, backend) = "";
  /// A rendezvous or a collective that waits longer than this fails with an error naming this
  /// rank and what it waited for, so that a rank that died or hung stops the others.
  TORCH_ARG(double, timeout_s) = 300;
};

/// Reads `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT`, as `torchrun`,
/// (with `TORCHELASTIC_USE_AGENT_STORE` and `TORCHELASTIC_RESTART_COUNT`),
/// `kdistill train --nproc N` and most launchers (Slurm, Kubernetes, mpirun scripts) set them.
/// Without `WORLD_SIZE` the result is one process. A malformed value throws `kdistill::Error`
/// naming the variable. `backend` and `timeout_s` keep `defaults`' values.
DistributedOptions distributed_from_env(const DistributedOptions& defaults = {});

/// A TCP port on 127.0.0.1 that was free a moment ago: a `master_port` for ranks started on one
/// host (`kdistill train --nproc N` takes one so). Throws `kdistill::Error` if none can be had.
///
/// Example:
/// ```
/// auto o = kdistill::DistributedOptions().world_size(2).master_port(kdistill::free_loopback_port());
/// ```
int64_t free_loopback_port();

/// A c10d process group (Gloo on the CPU, NCCL on CUDA): the same collectives PyTorch's
/// `torch.distributed` runs, so a kdistill job lives on the clusters and launchers PyTorch users
/// already have. Every call is collective: all ranks make it, in the same order. A failure or a
/// wait longer than the timeout throws `kdistill::Error` naming this rank and `what`.
///
/// Example:
/// ```
/// auto group = kdistill::ProcessGroup::create(kdistill::distributed_from_env());
/// auto opts = kdistill::TrainerOptions().process_group(group);  // batch_size stays the global batch
/// ```
class ProcessGroup {
 public:
  /// Joins the group (rank 0 serves the store; the others connect), waiting at most the timeout.
  static std::shared_ptr<ProcessGroup> create(const DistributedOptions& options,
                                              torch::Device device = torch::kCPU);
  ~ProcessGroup();
  /// Whether this build has the backend ("gloo" needs Gloo's headers at build time, "nccl" a
  /// CUDA libtorch with NCCL).
  static bool has_backend(const std::string& name);

  int64_t rank() const;
  int64_t size() const;
  /// "gloo" or "nccl".
  const std::string& backend() const;
  double timeout_s() const;

  /// A collective in flight (see `all_reduce_sum_async`).
  class Pending {
   public:
    Pending();
    Pending(Pending&&) noexcept;
    Pending& operator=(Pending&&) noexcept;
    /// Waits if it was not waited for (errors are not thrown from a destructor: call `wait`).
    ~Pending();
    /// Blocks until the collective has finished and its result is in the caller's tensors;
    /// a failure or the timeout throws `kdistill::Error` as the blocking call does. Waiting
    /// again, or on a default-constructed `Pending`, does nothing.
    void wait();

   private:
    friend class ProcessGroup;
    struct Impl;
    std::unique_ptr<Impl> impl_;
  };

  /// Sums each tensor element-wise over the ranks, in place. All tensors are in flight together
  /// (one collective per tensor): pass a few large flat buffers rather than many small ones.
  void all_reduce_sum(std::vector<torch::Tensor>& tensors, const std::string& what);
  /// `all_reduce_sum` without waiting: the sums land in `tensors` once the result's `wait()` has
  /// returned, and the caller must not touch them before. Collectives still start in the same
  /// order on every rank; computing between the start and the wait is what it is for (the
  /// trainer sums gradient buckets while backward computes the next ones).
  ///
  /// Example:
  /// ```
  /// std::vector<torch::Tensor> grads{bucket};
  /// auto pending = group->all_reduce_sum_async(grads, "bucket 0");
  /// // ... more backward ...
  /// pending.wait();  // bucket now holds every rank's sum
  /// ```
  Pending all_reduce_sum_async(const std::vector<torch::Tensor>& tensors, const std::string& what);
  /// Copies rank `root`'s tensors into every rank's (same shapes and types on all ranks).
  void broadcast(std::vector<torch::Tensor>& tensors, int64_t root, const std::string& what);
  /// Concatenates every rank's rows along dimension 0, in rank order. The row counts may differ;
  /// the other dimensions and the type must match.
  torch::Tensor all_gather_rows(const torch::Tensor& rows, const std::string& what);
  /// Waits until every rank has arrived.
  void barrier(const std::string& what);

 private:
  struct Impl;
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kdistill
#pragma GCC visibility pop
