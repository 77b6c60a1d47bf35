#!/usr/bin/env bash
# bf16 against fp32 on the CPU, C++ (bench/train_bench.cpp) and PyTorch-Python
# (bench/python_reference.py --precision) at the same settings, in interleaved rounds on an idle
# machine. Writes bench/results/bf16_cpu.json. Usage: bench/run_bf16_bench.sh [build-dir] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
tuned="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456"
filter='BM_TrainSteps/kind:(0|1|2)/threads:2|BM_TrainStepsBf16/kind:(0|1|2)/threads:2|BM_TeacherInference/batch:256/threads:2'
for round in $(seq 1 "$rounds"); do
  "$build/bench/train_bench" --benchmark_filter="$filter" --benchmark_min_time=2 \
    --benchmark_out="$tmp/cpp$round.json" --benchmark_out_format=json >/dev/null 2>&1
  for p in fp32 bf16; do
    GLIBC_TUNABLES=$tuned /usr/bin/python3 bench/python_reference.py --threads 2 --steps 300 --precision $p \
      > "$tmp/py_$p$round.json"
  done
done
/usr/bin/python3 - "$tmp" "$rounds" bench/results/bf16_cpu.json <<'PY'
import json, os, statistics, subprocess, sys
tmp, rounds, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = {0: "student_scratch", 1: "student_kd", 2: "teacher"}
cpp = {}
for r in range(1, rounds + 1):
    for b in json.load(open(f"{tmp}/cpp{r}.json"))["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        n = b["name"]
        if n.startswith("BM_TeacherInference"):
            key = "teacher_inference_b256_" + ("bf16" if n.endswith("bf16:1") else "fp32")
            cpp.setdefault(key, []).append(b["samples_per_s"])
            continue
        prec = "bf16" if n.startswith("BM_TrainStepsBf16") else "fp32"
        kind = int(n.split("kind:")[1].split("/")[0])
        cpp.setdefault(f"{names[kind]}_{prec}", []).append(b["train_samples_per_s"])
py = {}
for p in ("fp32", "bf16"):
    for r in range(1, rounds + 1):
        for k, v in json.load(open(f"{tmp}/py_{p}{r}.json"))["train_samples_per_s"].items():
            py.setdefault(f"{k}_{p}", []).append(v)
med = lambda v: round(statistics.median(v))
ctx = json.load(open(f"{tmp}/cpp1.json"))["context"]
flags = subprocess.run(["sh", "-c", "grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\\n' | grep -E 'bf16|amx' | tr '\\n' ' '"],
                       capture_output=True, text=True).stdout.strip()
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
out = {
    "what": "samples/s, batch 128 training (SGD, MLP-64 student, 784-1200-1200-10 teacher) and teacher inference at "
            f"batch 256; 2 threads; medians of {rounds} interleaved rounds. C++: DistillTrainer with "
            "TrainerOptions::precision (student_kd_bf16: bf16 teacher, fp32 student; teacher_bf16 and "
            "student_scratch_bf16: bf16 autocast on fp32 weights). Python: bench/python_reference.py --precision, "
            "the same mechanisms, same malloc settings (GLIBC_TUNABLES) and OpenMP policy.",
    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    "machine": {"cpu": cpu, "bf16_flags": flags, "cores": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)},
    "context": {k: ctx[k] for k in ("kdistill_version", "torch_version", "blas", "allocator") if k in ctx},
    "cpp": {k: {"median": med(v), "runs": [round(x) for x in v]} for k, v in sorted(cpp.items())},
    "python": {k: {"median": med(v), "runs": [round(x) for x in v]} for k, v in sorted(py.items())},
}
c, p = out["cpp"], out["python"]
out["ratios"] = {
    "cpp_kd_bf16_over_fp32": round(c["student_kd_bf16"]["median"] / c["student_kd_fp32"]["median"], 2),
    "cpp_teacher_training_bf16_over_fp32": round(c["teacher_bf16"]["median"] / c["teacher_fp32"]["median"], 2),
    "cpp_teacher_inference_bf16_over_fp32": round(c["teacher_inference_b256_bf16"]["median"] / c["teacher_inference_b256_fp32"]["median"], 2),
    "cpp_over_python_kd_bf16": round(c["student_kd_bf16"]["median"] / p["student_kd_bf16"]["median"], 2),
    "cpp_over_python_teacher_bf16": round(c["teacher_bf16"]["median"] / p["teacher_bf16"]["median"], 2),
    "cpp_over_python_kd_fp32": round(c["student_kd_fp32"]["median"] / p["student_kd_fp32"]["median"], 2),
    "cpp_over_python_scratch_fp32": round(c["student_scratch_fp32"]["median"] / p["student_scratch_fp32"]["median"], 2),
}
json.dump(out, open(dest, "w"), indent=2)
print(json.dumps(out["ratios"], indent=2))
print(json.dumps({k: v["median"] for k, v in c.items()}, indent=2))
print(json.dumps({k: v["median"] for k, v in p.items()}, indent=2))
PY
