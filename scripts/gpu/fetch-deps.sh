#!/usr/bin/env bash
# Run on this Debian 12 machine, before a run on a lent GPU machine (docs/gpu.md#on-a-lent-gpu-machine). That
# machine has PyTorch 2.x with CUDA, CMake, ninja and a compiler, but no package manager and no
# network: this downloads the Debian packages a kdistill build needs beyond those into .gpu/debs/,
# which git ignores and the device tool carries (`carry: [".gpu"]`), with Fashion-MNIST for the
# CUDA demo in .gpu/data/.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qxF '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
PACKAGES=(
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libeigen3-dev
  libhdf5-dev libhdf5-103-1 libhdf5-cpp-103-1 libhdf5-hl-100 libhdf5-hl-cpp-100 libsz2 libaec0
  libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian
  libdeflate-dev libdeflate0 libssl-dev libssl3 zlib1g-dev zlib1g
)
rm -rf .gpu/debs
mkdir -p .gpu/debs
(cd .gpu/debs && apt-get download -q "${PACKAGES[@]}")
mkdir -p .gpu/data
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz .gpu/data/
echo "fetch-deps: $(ls .gpu/debs | wc -l) packages, $(du -sh .gpu | cut -f1) in .gpu with the data"
