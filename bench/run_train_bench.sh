#!/usr/bin/env bash
# Training throughput, C++ (bench/train_bench.cpp through DistillTrainer) against the same loops
# in PyTorch-Python (bench/python_reference.py), measured in one run on an idle machine.
# Writes bench/results/train_throughput_cpu.json. Usage: bench/run_train_bench.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=bench/results
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$build/bench/train_bench" --benchmark_filter='threads:2' --benchmark_min_time=3 \
  --benchmark_repetitions=3 --benchmark_out="$tmp/cpp.json" --benchmark_out_format=json >/dev/null
/usr/bin/python3 bench/python_reference.py --threads 2 --steps 300 > "$tmp/py.json"

/usr/bin/python3 - "$tmp/cpp.json" "$tmp/py.json" "$out/train_throughput_cpu.json" <<'PY'
import json, platform, statistics, sys, subprocess
cpp, py, dest = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
names = {0: "student_scratch", 1: "student_kd", 2: "teacher"}
rates = {}
for b in cpp["benchmarks"]:
    if b.get("run_type") != "iteration":
        continue
    kind = int(b["name"].split("kind:")[1].split("/")[0])
    rates.setdefault(names[kind], []).append(b["train_samples_per_s"])
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
result = {
    "what": "training samples/s, batch 128, SGD lr 0.01 momentum 0.9, 2 threads, Fashion-MNIST-shaped random data",
    "machine": {"cpu": cpu, "cores": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout), "os": platform.platform()},
    "context": cpp["context"],
    "python": {"torch_version": py["torch_version"], "threads": py["threads"]},
    "models": {},
}
for name, values in rates.items():
    c = statistics.median(values)
    p = py["train_samples_per_s"][name]
    result["models"][name] = {"cpp_samples_per_s": round(c), "cpp_runs": [round(v) for v in values],
                              "python_samples_per_s": round(p), "speedup": round(c / p, 2)}
result["mlp64_batch1_python_us"] = py["mlp64_batch1_us"]
json.dump(result, open(dest, "w"), indent=2)
print(json.dumps(result["models"], indent=2))
PY
