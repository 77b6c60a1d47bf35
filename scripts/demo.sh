#!/usr/bin/env bash
# The README's main command: sets up, builds, and runs the Fashion-MNIST distillation demo.
# Extra arguments go to `kdistill demo` (see `build/kdistill demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec "${KDISTILL_BUILD_DIR:-build}/kdistill" demo "$@"
