#!/usr/bin/env bash
# Builds kdistill with AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/ and runs the
# C++ test suite under them. LibTorch is not instrumented, so leak checking is off (its static
# allocations would drown the report) and the Python module is not built (the interpreter is not
# ASan-instrumented). Usage: scripts/sanitize.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CCACHE_BASEDIR=$PWD OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKDISTILL_SANITIZE=ON \
  -DKDISTILL_BUILD_PYTHON=OFF -DKDISTILL_BUILD_BENCH=OFF -DPython3_EXECUTABLE=/usr/bin/python3 \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache
cmake --build build-asan -j "${KDISTILL_JOBS:-2}"
# allocator_may_return_null=1, as in scripts/fuzz.sh: libhdf5 asks malloc for whatever size a file's
# header claims and handles NULL, as glibc returns it; ASan would abort instead. C++ `new` still
# reports a failed allocation under ASan, so kdistill's own allocations stay checked.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_odr_violation=0:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j "${KDISTILL_JOBS:-2}" -E consumer_find_package "$@"
