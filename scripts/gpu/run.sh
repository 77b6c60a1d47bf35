#!/usr/bin/env bash
# Run on a lent GPU machine, from the repository root, after scripts/gpu/fetch-deps.sh here
# (docs/gpu.md#on-a-lent-gpu-machine). Builds kdistill against that machine's PyTorch 2.x (CUDA) with the
# carried Debian packages, runs the CUDA tests, the CUDA benchmarks and the whole suite, and
# writes everything under $OUT: summary.txt first, then a log per stage and the results as
# bench/results/*_cuda.json. Every stage runs and reports, whatever the ones before it did.
# STAGES (default "unpack configure build cuda-tests bench ctest") chooses stages; TORCH_PREFIX
# overrides where CMake finds Torch.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/kdistill-gpu-out}
DEPS=${DEPS:-/tmp/kdistill-deps}
BUILD=${BUILD:-build-gpu}
STAGES=${STAGES:-unpack configure build cuda-tests bench ctest}
mkdir -p "$OUT"
ARCH_LIB="$DEPS/usr/lib/x86_64-linux-gnu"
export LD_LIBRARY_PATH="$ARCH_LIB:$ARCH_LIB/hdf5/serial:$DEPS/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
say() { echo "[$(date +%T)] $*" | tee -a "$OUT/summary.txt"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }
# Runs a stage's command with its output in $OUT/NAME.log; the summary gets its status and tail.
stage() {
  local name=$1; shift
  local t0=$SECONDS
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  say "$name: exit $rc in $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || tail -n 15 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$OUT/summary.txt"
  return $rc
}

say "device: $(nvidia-smi -L 2>/dev/null | head -1 || echo 'no nvidia-smi')"
# A CUDA libtorch's CMake package needs the CUDA toolkit; images often keep it off PATH.
if ! command -v nvcc > /dev/null; then
  for d in /usr/local/cuda /usr/local/cuda-*; do
    if [ -x "$d/bin/nvcc" ]; then export PATH="$d/bin:$PATH" CUDACXX="$d/bin/nvcc"; break; fi
  done
fi
say "nvcc: $(nvcc --version 2>/dev/null | tail -1 || echo 'none found: configuring a CUDA libtorch may fail')"
say "torch: $(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())' 2>&1)"

unpack() {
  rm -rf "$DEPS" && mkdir -p "$DEPS"
  for f in .gpu/debs/*.deb; do dpkg -x "$f" "$DEPS" || return 1; done
  # Debian's absolute links (e.g. hdf5/serial/include -> /usr/include/hdf5/serial) point into the prefix.
  find "$DEPS" -type l -lname '/*' | while read -r link; do ln -sfn "$DEPS$(readlink "$link")" "$link"; done
  # HDF5's compiler wrappers print Debian's /usr paths: without them CMake searches HDF5_ROOT.
  rm -rf "$DEPS/usr/bin" "$ARCH_LIB/hdf5/serial/bin"
  ldd "$ARCH_LIB/libhdf5_serial.so.103" | grep "not found" && return 1
  return 0
}
configure() {
  local torch_prefix=${TORCH_PREFIX:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')}
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$DEPS/usr;$torch_prefix" -DCMAKE_LIBRARY_ARCHITECTURE=x86_64-linux-gnu \
    -DHDF5_ROOT="$ARCH_LIB/hdf5/serial" -DKDISTILL_BUILD_PYTHON=OFF -DPython3_EXECUTABLE="$(command -v python3)" \
    -DCMAKE_BUILD_RPATH="$ARCH_LIB;$ARCH_LIB/hdf5/serial;$DEPS/lib/x86_64-linux-gnu"
}
build() { cmake --build "$BUILD" -j "$(nproc)" -k 0; }
cuda_tests() {
  "$BUILD/tests/kdistill_tests" --gtest_filter='*_CUDA*:Precision.*:Trainer.DistilsIn*:SystemInfo.*:ParseDevice.*' \
    --gtest_output="json:$OUT/cuda_tests.json"
}
bench() {
  local models=/tmp/kdistill-models
  python3 bench/make_models.py "$models" || return 1
  local rc=0
  for p in fp32 bf16; do
    "$BUILD/kdistill" bench --teacher "$models/teacher_mlp.pt" --student "$models/student_mlp64.pt" --device cuda \
      --precision "$p" --json "$OUT/latency_cuda_$p.json" || rc=1
  done
  # The demo end to end on the GPU, in both precisions: accuracy and samples/s (Fashion-MNIST carried).
  for p in fp32 bf16; do
    "$BUILD/kdistill" demo --data .gpu/data --device cuda --precision "$p" --report "$OUT/demo_cuda_$p.json" \
      > "$OUT/demo_cuda_$p.txt" 2>&1 || rc=1
  done
  return $rc
}
full_ctest() { (cd "$BUILD" && ctest -j "$(nproc)" --timeout 300 --output-on-failure); }

if has unpack; then stage unpack unpack; fi
if has configure; then stage configure configure; fi
if has build; then stage build build; fi
if has cuda-tests; then stage cuda-tests cuda_tests; fi
if has bench; then stage bench bench; fi
if has ctest; then stage ctest full_ctest; grep -E "tests passed|tests failed" "$OUT/ctest.log" | tee -a "$OUT/summary.txt"; fi
say "done"
