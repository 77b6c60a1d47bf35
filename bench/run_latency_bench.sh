#!/usr/bin/env bash
# Latency of the demo's teacher against the MLP-64 and cnn:8,16 students, through LibTorch and
# through the Eigen runtime, measured three times (repeatability), once more with both models
# optimized for inference (--optimize), plus PyTorch-Python at batch 1 in the same run (eager,
# and the TorchScript file called from Python). Writes bench/results/latency_cpu.json and latency_cpu_*.png.
# Usage: bench/run_latency_bench.sh [build-dir] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-2}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
out=bench/results
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 bench/make_models.py "$tmp"
for student in mlp64 cnn; do
  for run in 1 2 3; do
    "$build/kdistill" bench --teacher "$tmp/teacher_mlp.pt" --student "$tmp/student_$student.pt" \
      --batch 1,8,64,256 --threads "$threads" --runtimes torch,eigen --json "$tmp/${student}_$run.json" > /dev/null
  done
  # Once more with both models frozen and optimize_for_inference'd, as they would be served.
  "$build/kdistill" bench --teacher "$tmp/teacher_mlp.pt" --student "$tmp/student_$student.pt" \
    --batch 1,8,64,256 --threads "$threads" --runtimes torch --optimize --json "$tmp/${student}_opt.json" > /dev/null
done
for student in mlp64 cnn; do
  /usr/bin/python3 bench/python_latency.py "$tmp/student_$student.pt" 1 "$threads" > "$tmp/py_$student.json"
done
/usr/bin/python3 - "$tmp" "$out" "$threads" <<'PY'
import json, os, platform, statistics, subprocess, sys
tmp, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
result = {"machine": {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform()}, "threads": threads, "students": {}}
for student in ("mlp64", "cnn"):
    runs = [json.load(open(f"{tmp}/{student}_{r}.json")) for r in (1, 2, 3)]
    table = {}
    for model in ("teacher", "student", "student_eigen"):
        for b in ("1", "8", "64", "256"):
            p50s = [r["models"][model]["latency_ms"][b]["p50"] for r in runs]
            p99s = [r["models"][model]["latency_ms"][b]["p99"] for r in runs]
            table.setdefault(model, {})[b] = {"p50": statistics.median(p50s), "p99": statistics.median(p99s),
                                              "p50_runs": p50s, "p50_spread_pct": 100 * (max(p50s) - min(p50s)) / statistics.median(p50s)}
    opt = json.load(open(f"{tmp}/{student}_opt.json"))
    for model in ("teacher", "student"):
        table[model + "_optimized"] = {b: {k: opt["models"][model]["latency_ms"][b][k] for k in ("p50", "p99")}
                                       for b in ("1", "8", "64", "256")}
    py = json.load(open(f"{tmp}/py_{student}.json"))
    result["students"][student] = {"latency_ms": table, "python_eager_batch1": py["eager"],
                                   "python_torchscript_batch1": py["torchscript"],
                                   "torch_version": runs[0]["torch_version"], "report": runs[1]}
    json.dump(runs[1], open(f"{out}/latency_cpu_{student}_report.json", "w"), indent=2)
json.dump(result, open(f"{out}/latency_cpu.json", "w"), indent=2)
for student, s in result["students"].items():
    t = s["latency_ms"]
    print(f"\n{student} (threads {threads}): p50 / p99 ms, speed-up at p50 over the teacher, spread of p50 over 3 runs")
    print("| batch | teacher | student (torch) | student (eigen) | speed-up torch | speed-up eigen |")
    print("|---:|---:|---:|---:|---:|---:|")
    for b in ("1", "8", "64", "256"):
        f = lambda m: f"{t[m][b]['p50']:.4g} / {t[m][b]['p99']:.4g} (±{t[m][b]['p50_spread_pct']:.0f}%)"
        print(f"| {b} | {f('teacher')} | {f('student')} | {f('student_eigen')} | "
              f"{t['teacher'][b]['p50'] / t['student'][b]['p50']:.1f}x | {t['teacher'][b]['p50'] / t['student_eigen'][b]['p50']:.1f}x |")
    print("optimized (one run), p50 ms: teacher " + " ".join(f"{t['teacher_optimized'][b]['p50']:.4g}" for b in ("1", "8", "64", "256"))
          + ", student " + " ".join(f"{t['student_optimized'][b]['p50']:.4g}" for b in ("1", "8", "64", "256")))
    print(f"PyTorch-Python, batch 1: p50 eager {1000 * s['python_eager_batch1']['p50']:.1f} us, "
          f"TorchScript from Python {1000 * s['python_torchscript_batch1']['p50']:.1f} us")
PY
for student in mlp64 cnn; do
  /usr/bin/python3 bench/plot_report.py "$out/latency_cpu_${student}_report.json" "$out/latency_cpu_${student}.png"
done
