#!/usr/bin/env bash
# The MLP-64 student trained from labels, kdistill (bench/train_bench) against PyTorch-Python
# (bench/python_reference.py) at equal settings: 2 threads, the same OpenMP policy, the same malloc
# thresholds (kdistill::tune_allocator() in C++, GLIBC_TUNABLES in Python), fp32. Interleaved
# rounds on an idle machine; writes bench/results/small_student_ratio_cpu.json with every run, the
# medians and the ratio. Each round also times the same student trained by a hand-written LibTorch
# C++ loop (BM_BareLibTorchSteps): the trainer's own cost is the gap between the two C++ figures.
# Usage: bench/run_small_student_ratio.sh [build-dir] [rounds, default 7]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-7}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active}
tuned="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"
cpp=() bare=() py=()
rate() {  # train_samples_per_s of one train_bench benchmark
  "$build/bench/train_bench" --benchmark_filter="$1" --benchmark_min_time=2 --benchmark_format=json 2>/dev/null |
    /usr/bin/python3 -c \
      'import json,sys; print([b for b in json.load(sys.stdin)["benchmarks"] if b.get("run_type")=="iteration"][0]["train_samples_per_s"])'
}
for round in $(seq 1 "$rounds"); do
  cpp+=("$(rate 'BM_TrainSteps/kind:0/threads:2/')")
  bare+=("$(rate 'BM_BareLibTorchSteps/threads:2/')")
  py+=("$(GLIBC_TUNABLES=$tuned /usr/bin/python3 bench/python_reference.py --threads 2 --steps 300 --precision fp32 |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["train_samples_per_s"]["student_scratch"])')")
done
/usr/bin/python3 - "$OMP_WAIT_POLICY" "${cpp[*]}" "${py[*]}" "${bare[*]}" <<'PY'
import json, statistics, subprocess, sys, time
policy = sys.argv[1]
cpp, py, bare = ([float(x) for x in arg.split()] for arg in sys.argv[2:5])
ratios = [c / p for c, p in zip(cpp, py)]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
out = {
    "what": "samples/s of the MLP-64 student trained from labels (batch 128, SGD momentum 0.9, 300 timed steps after 20), "
            "kdistill C++ (bench/train_bench, DistillTrainer) against PyTorch-Python (bench/python_reference.py), "
            "2 threads, same OpenMP policy, same malloc thresholds, fp32; interleaved rounds, in each the trainer, then a hand-written LibTorch C++ loop (bare), then Python",
    "date": time.strftime("%Y-%m-%d"), "omp_wait_policy": policy, "cpu": cpu, "cores": 2,
    "cpp": {"runs": [round(x) for x in cpp], "median": round(statistics.median(cpp))},
    "python": {"runs": [round(x) for x in py], "median": round(statistics.median(py))},
    "bare_libtorch_cpp": {"runs": [round(x) for x in bare], "median": round(statistics.median(bare))},
    "trainer_over_bare_per_round": {"runs": [round(c / b, 3) for c, b in zip(cpp, bare)],
                                    "median": round(statistics.median([c / b for c, b in zip(cpp, bare)]), 3)},
    "ratio_of_medians": round(statistics.median(cpp) / statistics.median(py), 3),
    "ratio_per_round": {"runs": [round(r, 3) for r in ratios], "median": round(statistics.median(ratios), 3),
                        "min": round(min(ratios), 3), "max": round(max(ratios), 3)},
}
json.dump(out, open(f"bench/results/small_student_ratio_cpu{'' if policy == 'active' else '_' + policy}.json", "w"), indent=1)
print(json.dumps(out, indent=1))
PY
