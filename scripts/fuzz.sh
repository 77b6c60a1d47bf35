#!/usr/bin/env bash
# Fuzzes kdistill's readers with libFuzzer for a bounded time (issue 7): the IDX reader, the run-
# configuration parser and the HDF5 data/cache readers. Builds them with clang, ASan and UBSan in
# build-fuzz/, starts each from the seed corpus in tests/fuzz/corpus/<target>/ and runs it for
# SECONDS. New interesting inputs go to build-fuzz/corpus/<target>/ (not the repository); a
# crash, uncaught exception, timeout or over-limit allocation in kdistill's code stops that
# target and is written to build-fuzz/crashes/<target>/ (crashes inside libhdf5 itself are set
# aside in build-fuzz/upstream/<target>/ and fuzzing continues: see tests/fuzz/README.md). Copy it into tests/fuzz/regressions/<target>/, fix the reader, and
# `ctest -R fuzz_replay` replays it in every build from then on.
#
# Usage: scripts/fuzz.sh [SECONDS per target, default 60] [TARGET ...]   (targets: idx config hdf5 runtime)
# Exit status: 0 when every target ran its time without a finding, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS per target] [TARGET ...]   (targets: idx config hdf5 runtime)" >&2
  exit 2
fi
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(idx config hdf5 runtime)

bash scripts/setup.sh --fuzz
export CCACHE_BASEDIR=$PWD
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DKDISTILL_FUZZ=ON -DKDISTILL_BUILD_EXAMPLES=OFF -DKDISTILL_BUILD_BENCH=OFF -DKDISTILL_BUILD_PYTHON=OFF \
  -DKDISTILL_INSTALL=OFF -DPython3_EXECUTABLE=/usr/bin/python3 -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
cmake --build build-fuzz -j "${KDISTILL_JOBS:-2}" --target "${targets[@]/#/fuzz_}"

# LibTorch's static allocations are not leaks worth reporting; one malloc above 1 GiB from a
# small input is a finding (the reader trusted a header), as is any input that runs over 10 s.
# A malloc too large to serve returns NULL, as it does outside ASan: libhdf5 sizes its metadata
# reads from the file's own fields and handles the NULL (an HDF5 error, which kdistill reports),
# so the HDF5 targets (hdf5, runtime) lift the per-malloc limit and relies on the RSS limit; kdistill's own
# allocation for a dataset is bounded by what the file stores (tested in hdf5_test.cpp).
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_odr_violation=0:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
# Where a crash happened: "upstream" when the first frame below the sanitizer's own is in libhdf5
# (memory errors in HDF5 1.10's parser on crafted files, which kdistill cannot fix), else "ours".
# A heap overflow of a buffer that was not allocated inside libhdf5 (its "allocated by" stack
# starts elsewhere, e.g. in LibTorch for a tensor kdistill asked for) is kdistill's, wherever the
# write happened.
first_frame() {
  grep -E '^ +#[0-9]+ ' |
    grep -vE ' in (__interceptor_|__asan|__sanitizer|fuzzer::|__mem|__str|malloc|calloc|realloc|free|posix_memalign|aligned_alloc|operator new|memcpy|memmove|memset|strlen|strdup|strndup|strcmp|memcmp)' |
    grep -vE '/libc\.so|sysdeps/' | head -1 || true
}
classify() {
  local report alloc frame
  report=$("build-fuzz/tests/fuzz/fuzz_$1" -timeout=10 -rss_limit_mb=4096 "$2" 2>&1 || true)
  alloc=$(sed -n '/allocated by thread/,$p' <<<"$report" | first_frame)
  if [ -n "$alloc" ] && ! grep -q 'libhdf5_serial\.so' <<<"$alloc"; then
    echo ours
    return
  fi
  frame=$(first_frame <<<"$report")
  if grep -q 'libhdf5_serial\.so' <<<"$frame"; then echo upstream; else echo ours; fi
}

status=0
for t in "${targets[@]}"; do
  work=build-fuzz/corpus/$t crashes=build-fuzz/crashes/$t upstream=build-fuzz/upstream/$t
  mkdir -p "$work" "$crashes" "$upstream"
  extra=(-malloc_limit_mb=1024)
  [ "$t" = hdf5 ] || [ "$t" = runtime ] && extra=(-malloc_limit_mb=1048576)
  [ -f "tests/fuzz/$t.dict" ] && extra+=(-dict="tests/fuzz/$t.dict")
  echo "fuzz: $t for ${seconds}s"
  : > "build-fuzz/fuzz_$t.log"
  end=$((SECONDS + seconds))
  # A crash inside libhdf5 is set aside (build-fuzz/upstream/) and fuzzing goes on; any other
  # finding ends this target with a failure.
  while [ $((end - SECONDS)) -gt 0 ]; do
    left=$((end - SECONDS))
    [ "$left" -gt 0 ] || break  # libFuzzer reads -max_total_time=0 as "no limit"
    before=$(ls "$crashes" | wc -l)
    if "build-fuzz/tests/fuzz/fuzz_$t" "${extra[@]}" -max_total_time="$left" -timeout=10 \
        -rss_limit_mb=4096 -max_len=16384 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$work" "tests/fuzz/corpus/$t" 2>> "build-fuzz/fuzz_$t.log"; then
      grep -E "stat::number_of_executed_units|stat::new_units_added|DONE" "build-fuzz/fuzz_$t.log" | tail -3 || true
      break
    fi
    artifact=$(ls -t "$crashes"/* 2>/dev/null | head -1 || true)
    if [ -n "$artifact" ] && [ "$(ls "$crashes" | wc -l)" -gt "$before" ] && [ "$(classify "$t" "$artifact")" = upstream ]; then
      echo "fuzz: $t: a crash inside libhdf5 (not kdistill's code), set aside in $upstream/"
      mv "$artifact" "$upstream/"
      continue
    fi
    status=1
    echo "fuzz: $t FOUND A PROBLEM; input(s) in $crashes/, log in build-fuzz/fuzz_$t.log:"
    grep -E "ERROR|SUMMARY|terminate|what\(\)|fuzz_" "build-fuzz/fuzz_$t.log" | tail -6 || true
    break
  done
done
exit $status
