#!/usr/bin/env bash
# Repeatability of `kdistill bench` (issue 4's target: the same measurement, run three times on an
# idle machine, gives p50 within 5%). Runs the demo pair (mlp:1200,1200 teacher, MLP-64 student,
# LibTorch and the Eigen runtime) three times back to back at 1 and at 2 threads and writes every
# cell's p50s and spread to bench/results/repeatability_cpu.json, with the load average before and
# after as a record of how idle the machine was. Usage: bench/run_repeatability.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 bench/make_models.py "$tmp" > /dev/null
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for threads in 1 2; do
  for run in 1 2 3; do
    "$build/kdistill" bench --teacher "$tmp/teacher_mlp.pt" --student "$tmp/student_mlp64.pt" \
      --batch 1,8,64,256 --threads "$threads" --runtimes torch,eigen --json "$tmp/t${threads}_$run.json" > /dev/null
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/python3 - "$tmp" "$load_before" "$load_after" <<'PY'
import json, os, platform, statistics, subprocess, sys
tmp, before, after = sys.argv[1:4]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
out = {"what": "p50 of kdistill bench, 3 back-to-back runs per thread count; spread = (max - min) / median",
       "machine": {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform()},
       "loadavg_before": before, "loadavg_after": after, "threads": {}}
worst = 0.0
for threads in (1, 2):
    runs = [json.load(open(f"{tmp}/t{threads}_{r}.json")) for r in (1, 2, 3)]
    cells = {}
    for model in ("teacher", "student", "student_eigen"):
        for b in ("1", "8", "64", "256"):
            p50 = [r["models"][model]["latency_ms"][b]["p50"] for r in runs]
            spread = 100 * (max(p50) - min(p50)) / statistics.median(p50)
            worst = max(worst, spread)
            cells[f"{model}/batch {b}"] = {"p50_ms": p50, "spread_pct": round(spread, 1)}
            print(f"threads {threads} {model:14s} batch {b:>3s}: p50 " + " ".join(f"{v * 1000:9.2f}" for v in p50)
                  + f" us  spread {spread:4.1f}%")
    out["threads"][str(threads)] = cells
out["worst_spread_pct"] = round(worst, 1)
out["within_5_pct"] = worst <= 5.0
json.dump(out, open("bench/results/repeatability_cpu.json", "w"), indent=2)
print(f"worst spread {worst:.1f}% (load average before {before}, after {after})")
PY
