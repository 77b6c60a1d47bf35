#!/usr/bin/env bash
# The README's test command: sets up, builds, and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
# Passive OpenMP waiting: ctest runs two tests at once on two cores, a shared machine, where
# spinning threads made 2-thread runs 1.5-3x slower (bench/results/omp_policy_cpu.json).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
bash scripts/build.sh
build_dir=${KDISTILL_BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure -j "${KDISTILL_JOBS:-2}" "$@"
