#!/usr/bin/env bash
# The README's main command: sets up, builds, and runs the Fashion-MNIST distillation demo.
# Extra arguments go to `kdistill demo` (see `build/kdistill demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
# Passive OpenMP waiting: spinning threads made 2-thread runs 2-3x slower on shared machines.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
bash scripts/build.sh
exec "${KDISTILL_BUILD_DIR:-build}/kdistill" demo "$@"
