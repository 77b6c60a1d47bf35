#!/usr/bin/env bash
# Installs what is missing, configures and builds kdistill (Release, Ninja, ccache) in build/.
# Environment: KDISTILL_BUILD_DIR (default build), KDISTILL_JOBS (default 2), KDISTILL_CMAKE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

build_dir=${KDISTILL_BUILD_DIR:-build}
# Paths under the checkout are hashed relative to it, so a fresh clone elsewhere (CI) hits the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi

# /usr/bin/python3 is Debian's interpreter, the one that sees python3-torch.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DPython3_EXECUTABLE=/usr/bin/python3 "${launcher[@]}" ${KDISTILL_CMAKE_ARGS:-}
cmake --build "$build_dir" -j "${KDISTILL_JOBS:-2}"
