#pragma once

namespace kdistill::cli {

/// `kdistill train --nproc N`: starts N copies of this command (without --nproc) with the
/// variables torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free
/// MASTER_PORT), and waits. When a worker fails, the others are stopped, and the error names the
/// worker's rank and how it ended. Returns the exit status for the command.
int launch_workers(int nproc);

}  // namespace kdistill::cli
