#!/usr/bin/env bash
# OpenMP wait policy (passive or active) on training throughput, on an idle machine and with one
# other busy process (a single-threaded spin loop standing for a shared machine), in interleaved
# rounds. Writes bench/results/omp_policy_cpu.json. Usage: bench/run_omp_policy_bench.sh [build] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-2}
tmp=$(mktemp -d)
hog=
trap '[ -n "$hog" ] && kill $hog 2>/dev/null; rm -rf "$tmp"' EXIT
filter='BM_TrainSteps/kind:(0|1|3)/threads:2|BM_TrainStepsBf16/kind:1/threads:2'
for round in $(seq 1 "$rounds"); do
  for load in idle busy; do
    if [ "$load" = busy ]; then
      /usr/bin/python3 -c 'while True: pass' & hog=$!
    fi
    for policy in passive active; do
      OMP_WAIT_POLICY=$policy "$build/bench/train_bench" --benchmark_filter="$filter" --benchmark_min_time=2 \
        --benchmark_out="$tmp/$load-$policy-$round.json" --benchmark_out_format=json >/dev/null 2>&1
    done
    if [ -n "$hog" ]; then kill $hog; wait $hog 2>/dev/null || true; hog=; fi
  done
done
/usr/bin/python3 - "$tmp" "$rounds" bench/results/omp_policy_cpu.json <<'PY'
import json, statistics, subprocess, sys
tmp, rounds, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = {0: "student_from_labels", 1: "student_kd_live_teacher", 3: "student_kd_cached_logits"}
res = {}
for load in ("idle", "busy"):
    for policy in ("passive", "active"):
        for r in range(1, rounds + 1):
            for b in json.load(open(f"{tmp}/{load}-{policy}-{r}.json"))["benchmarks"]:
                if b.get("run_type") != "iteration":
                    continue
                kind = int(b["name"].split("kind:")[1].split("/")[0])
                name = names[kind] + ("_bf16_teacher" if b["name"].startswith("BM_TrainStepsBf16") else "")
                res.setdefault(load, {}).setdefault(name, {}).setdefault(policy, []).append(round(b["train_samples_per_s"]))
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
out = {"what": "training samples/s (bench/train_bench, batch 128, 2 threads) under OMP_WAIT_POLICY passive and active; "
               f"idle machine, and with one single-threaded busy process; medians of {rounds} interleaved rounds",
       "machine": {"cpu": cpu, "cores": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)},
       "results": {}}
for load, models in res.items():
    for name, pol in models.items():
        p, a = statistics.median(pol["passive"]), statistics.median(pol["active"])
        out["results"].setdefault(load, {})[name] = {"passive": round(p), "active": round(a),
                                                     "active_over_passive": round(a / p, 2), "runs": pol}
json.dump(out, open(dest, "w"), indent=2)
for load, models in out["results"].items():
    for name, v in models.items():
        print(load, name, v["passive"], v["active"], v["active_over_passive"])
PY
