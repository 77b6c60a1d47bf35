#!/usr/bin/env bash
# Installs kdistill's Debian 12 dependencies. Idempotent: installs only what is missing,
# runs `apt-get update` at most once, never asks a question.
set -euo pipefail

# libopenblas0-openmp is not optional: without an optimised BLAS, Debian's libtorch falls back
# to the reference BLAS and dense layers run about 40x slower.
PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-openmp libgloo-dev
  libspdlog-dev libfmt-dev libeigen3-dev libhdf5-dev libgtest-dev libgmock-dev libbenchmark-dev
  zlib1g-dev libdeflate-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev pybind11-dev libssl-dev
  python3-dev python3-torch python3-pytest python3-h5py python3-matplotlib python3-numpy
  ccache dataset-fashion-mnist fortunes
)
# libgloo-dev: the headers of Gloo, which libtorch's c10d process group uses for data-parallel
# training on CPUs (`kdistill train --nproc N`).
# fortunes: about 2.5 MB of plain English text (/usr/share/games/fortunes), the text of the
# language-model demo (`kdistill demo --task lm`).
# `setup.sh --fuzz` adds what scripts/fuzz.sh needs: clang and its libFuzzer runtime.
if [ "${1:-}" = "--fuzz" ]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
else
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# libtorch loads libblas.so.3, which Debian's alternatives point at one BLAS. OpenBLAS's pthread
# build, when installed too (it has the higher priority), spins its own threads against
# LibTorch's OpenMP threads: measured on 2 cores, MLP-64 training ran at 90k samples/s with it
# and 254k with the OpenMP build. Point the alternative at the OpenMP build.
arch_dir=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
for lib in libblas.so.3 liblapack.so.3; do
  want="$arch_dir/openblas-openmp/$lib"
  name="$lib-$(basename "$arch_dir")"
  if [ -e "$want" ] && [ "$(readlink -f "$arch_dir/$lib")" != "$(readlink -f "$want")" ]; then
    echo "setup: selecting OpenBLAS's OpenMP build for $lib (update-alternatives --set $name $want)"
    $SUDO update-alternatives --set "$name" "$want"
  fi
done
