#!/usr/bin/env bash
# A/B training throughput of two builds of kdistill (e.g. before and after a change to the
# training engine): bench/train_bench from each, run in interleaved rounds (A, B, A, B, ...) on an
# idle machine, medians compared. Writes a JSON file with every run, the medians and B/A.
#
# Usage: bench/run_ab_train_bench.sh A_BUILD_DIR B_BUILD_DIR OUT.json [ROUNDS, default 5]
#   e.g. bench/run_ab_train_bench.sh /tmp/old/build build bench/results/engine_refactor.json
# Environment: OMP_WAIT_POLICY (default passive, the setting of the recorded A/B runs), A_LABEL and
# B_LABEL (the commits measured, recorded in the file).
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 out=$3 rounds=${4:-5}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# kind 0: MLP-64 from labels; 1: live-teacher KD; 3: cached-logit KD (train_bench.cpp); 2 threads.
filter='BM_TrainSteps/kind:(0|1|3)/threads:2'
for round in $(seq 1 "$rounds"); do
  for side in a b; do
    dir=$a
    [ "$side" = b ] && dir=$b
    "$dir/bench/train_bench" --benchmark_filter="$filter" --benchmark_min_time=2 \
      --benchmark_out="$tmp/$side$round.json" --benchmark_out_format=json >/dev/null 2>&1
  done
done
/usr/bin/python3 - "$tmp" "$rounds" "$out" "${A_LABEL:-$a}" "${B_LABEL:-$b}" <<'PY'
import json, statistics, subprocess, sys
tmp, rounds, dest, a_label, b_label = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
names = {0: "student_from_labels", 1: "student_kd_live_teacher", 3: "student_kd_cached_logits"}
runs = {"a": {}, "b": {}}
for side in runs:
    for r in range(1, rounds + 1):
        for bm in json.load(open(f"{tmp}/{side}{r}.json"))["benchmarks"]:
            if bm.get("run_type") != "iteration":
                continue
            kind = int(bm["name"].split("kind:")[1].split("/")[0])
            runs[side].setdefault(names[kind], []).append(round(bm["train_samples_per_s"]))
ctx = json.load(open(f"{tmp}/a1.json"))["context"]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                     text=True).stdout.strip()
result = {
    "what": "training samples/s through DistillTrainer::fit (bench/train_bench.cpp: batch 128, SGD, MLP-64 student, "
            "784-1200-1200-10 teacher, 20 warm-up + 300 timed steps per run), 2 threads; A and B run in "
            f"{rounds} interleaved rounds; medians compared",
    "a": a_label, "b": b_label,
    "omp_wait_policy": __import__("os").environ.get("OMP_WAIT_POLICY", ""),
    "machine": {"cpu": cpu, "cores": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)},
    "context": {k: ctx[k] for k in ("kdistill_version", "torch_version", "blas", "allocator") if k in ctx},
    "models": {},
}
for name in names.values():
    ma, mb = statistics.median(runs["a"][name]), statistics.median(runs["b"][name])
    result["models"][name] = {"a_median": round(ma), "b_median": round(mb), "b_over_a": round(mb / ma, 4),
                              "a_runs": runs["a"][name], "b_runs": runs["b"][name]}
json.dump(result, open(dest, "w"), indent=2)
print(json.dumps(result["models"], indent=2))
PY
