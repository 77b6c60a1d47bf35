#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), configures and builds kdistill (Release, Ninja,
# ccache) in build/.
#
#   bash scripts/build.sh                         everything: library, command, tests, benchmarks
#   bash scripts/build.sh --target kdistill_cli   only the kdistill command and what it links
#   bash scripts/build.sh --no-setup              leave the machine alone: no packages installed,
#                                                 no BLAS alternative changed (a developer's build)
#
# Environment: KDISTILL_BUILD_DIR (default build), KDISTILL_JOBS (default 2), KDISTILL_CMAKE_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."

setup=1
targets=()
while (($#)); do
  case "$1" in
    --no-setup) setup=0 ;;
    --target)
      (($# >= 2)) || { echo "build.sh: --target needs a target name" >&2; exit 2; }
      targets+=(--target "$2")
      shift ;;
    *) echo "build.sh: unknown argument '$1' (expected --no-setup or --target NAME)" >&2; exit 2 ;;
  esac
  shift
done
if ((setup)); then bash scripts/setup.sh; fi

build_dir=${KDISTILL_BUILD_DIR:-build}
# Paths under the checkout are hashed relative to it, so a fresh clone elsewhere (CI) hits the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi

# /usr/bin/python3 is Debian's interpreter, the one that sees python3-torch.
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DPython3_EXECUTABLE=/usr/bin/python3 "${launcher[@]}" ${KDISTILL_CMAKE_ARGS:-}
cmake --build "$build_dir" -j "${KDISTILL_JOBS:-2}" "${targets[@]}"
