#!/usr/bin/env bash
# The README's test command: sets up, builds, and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Passive OpenMP waiting: spinning threads made 2-thread runs 2-3x slower on shared machines.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
bash scripts/build.sh
build_dir=${KDISTILL_BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure -j "${KDISTILL_JOBS:-2}" "$@"
