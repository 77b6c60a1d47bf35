#!/usr/bin/env bash
# Compile-checks kdistill against PyTorch 2.x's headers on this Debian 12 machine, whose own
# libtorch is 1.13 (docs/gpu.md#checking-against-pytorch-2-here). It downloads Debian trixie's
# libtorch-dev (2.6) into .torch2/, which git ignores, and runs every C++ file of the build through
# the compiler with -fsyntax-only, its LibTorch include folders swapped for 2.6's. With --cuda it also
# downloads trixie's CUDA build of the headers, CUDA's and NCCL's (about 1 GB) and checks the files
# that name CUDA or NCCL with the nccl backend enabled. Nothing is linked or run: a lent GPU machine
# does that (scripts/gpu/run.sh).
# Usage: scripts/gpu/check-torch2.sh [--cuda] [build-dir, default build (a Ninja build)]; ONLY=REGEX
# limits the check to the files whose path matches (e.g. ONLY=lib/train).
set -euo pipefail
cd "$(dirname "$0")/../.."
cuda=0
if [ "${1:-}" = "--cuda" ]; then cuda=1; shift; fi
build=${1:-build}
[ -f "$build/build.ninja" ] || { echo "check-torch2: $build is not a Ninja build folder (configure with -G Ninja)" >&2; exit 2; }
grep -qxF '/.torch2/' .git/info/exclude 2>/dev/null || echo '/.torch2/' >> .git/info/exclude
dir=$PWD/.torch2
rm -rf "$dir/debs"  # one version of each package: the unpacking globs for it
mkdir -p "$dir/apt/lists/partial" "$dir/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main contrib non-free" \
  > "$dir/apt/sources.list"
apt_opts=(-o "Dir::Etc::sourcelist=$dir/apt/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$dir/apt/lists"
          -o Debug::NoLocking=1)
apt-get -q "${apt_opts[@]}" update > /dev/null
packages=(libtorch-dev)
[ $cuda = 1 ] && packages+=(libtorch-cuda-dev libnccl-dev nvidia-cuda-dev libcu++-dev)
(cd "$dir/debs" && apt-get -q "${apt_opts[@]}" download "${packages[@]}" 2> /dev/null)
unpack() {  # unpack DEST PACKAGE...: the packages' include folders
  local dest=$1; shift
  rm -rf "$dest" && mkdir -p "$dest"
  for p in "$@"; do dpkg-deb --fsys-tarfile "$dir"/debs/"${p}"_*.deb | tar -x -C "$dest" --wildcards '*include*'; done
}
unpack "$dir/cpu" libtorch-dev
[ $cuda = 1 ] && unpack "$dir/cuda" libtorch-cuda-dev libnccl-dev nvidia-cuda-dev libcu++-dev
ninja -C "$build" -t compdb > "$dir/compdb.json"

/usr/bin/python3 - "$dir" "$PWD" "$cuda" "${ONLY:-}" <<'PY'
import json, os, re, shlex, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

root, repo, cuda, only = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
SWAPPED = "/usr/include/torch/csrc/api/include"  # Debian 1.13's, the one include folder CMake names


def command(entry, include, extra):
    """The entry's compiler call, checking syntax only, with LibTorch's headers taken from include."""
    args, out, i = shlex.split(entry["command"]), [], 0
    if os.path.basename(args[0]) == "ccache":
        args = args[1:]
    while i < len(args):
        a = args[i]
        if a in ("-MT", "-MF", "-o", "-c") or (a == "-include" and "cmake_pch" in args[i + 1]):
            i += 2
            continue
        if a in ("-MD", "-Winvalid-pch"):
            i += 1
            continue
        if a == "-isystem" and args[i + 1] == SWAPPED:
            out += ["-isystem", include + "/torch/csrc/api/include", "-isystem", include]
            i += 2
            continue
        out.append(a)
        i += 1
    return out + extra + ["-fsyntax-only", entry["file"]]


def version(include):
    probe = "#include <torch/version.h>\nTORCH_VERSION_MAJOR.TORCH_VERSION_MINOR.TORCH_VERSION_PATCH\n"
    r = subprocess.run(["c++", "-E", "-P", "-isystem", include + "/torch/csrc/api/include", "-x", "c++", "-"], input=probe, capture_output=True, text=True)
    return r.stdout.strip().splitlines()[-1].replace(" ", "")


def check(label, include, entries, extra):
    print(f"check-torch2: {len(entries)} files against LibTorch {version(include)} ({label})", flush=True)
    def run(e):
        r = subprocess.run(command(e, include, extra), cwd=e["directory"], capture_output=True, text=True)
        return e["file"], r.returncode, r.stderr
    failed = 0
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for path, rc, err in pool.map(run, entries):
            if rc != 0:
                failed += 1
                print(f"FAILED {os.path.relpath(path, repo)}")
                print("\n".join([l for l in err.splitlines() if "error" in l][:10]), flush=True)
    return failed


entries = [e for e in json.load(open(root + "/compdb.json"))
           if e["file"].startswith(repo + "/") and e["file"].endswith(".cpp") and "cmake_pch" not in e["file"]
           and SWAPPED in e["command"] and re.search(only, e["file"])]
failed = check("CPU headers", root + "/cpu/usr/include", entries, [])
if cuda:
    named = [e for e in entries if re.search(r"cuda|nccl", open(e["file"]).read(), re.IGNORECASE)]
    failed += check("CUDA headers, the nccl backend on", root + "/cuda/usr/include", named, ["-DKDISTILL_WITH_NCCL"])
print("check-torch2: " + (f"{failed} failed" if failed else "every file compiles"))
sys.exit(1 if failed else 0)
PY
