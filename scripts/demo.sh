#!/usr/bin/env bash
# The README's main command: sets up, builds the kdistill command (only it and the libraries it
# links, not the tests), and runs the Fashion-MNIST distillation demo.
# Extra arguments go to `kdistill demo` (see `build/kdistill demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenMP waiting: the kdistill command waits actively unless OMP_WAIT_POLICY is set (fastest on a
# machine given to this job); on a shared machine run with OMP_WAIT_POLICY=passive.
bash scripts/build.sh --target kdistill_cli
exec "${KDISTILL_BUILD_DIR:-build}/kdistill" demo "$@"
