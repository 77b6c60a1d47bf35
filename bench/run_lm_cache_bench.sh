#!/usr/bin/env bash
# The language-model demo distilled from teacher caches instead of the live teacher (issue: sparse
# caches, language-model target): `kdistill demo --task lm --teacher-cache SPEC` for each SPEC and
# seed, with the teacher of bench/run_lm_demo.sh (trained by seed 0, or given). Each run also
# trains the student from the text alone, so the per-step cost of distilling from the cache is
# read against it. Writes bench/results/lm_cache_cpu.json. Run it on an idle machine.
# Usage: bench/run_lm_cache_bench.sh [build-dir] [seeds] [specs] [teacher.pt to reuse]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
seeds=${2:-1}
specs=${3:-"topk:16 sampled:64"}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
teacher=${4:-$tmp/teacher.pt}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for seed in $(seq 0 $((seeds - 1))); do
  for spec in $specs; do
    name="seed${seed}_${spec/:/}"
    "$build/kdistill" demo --task lm --seed "$seed" --teacher-cache "$spec" --teacher-weights "$teacher" \
      --report "$tmp/$name.json" > "$tmp/$name.log" 2>&1
  done
done
/usr/bin/python3 - "$tmp" "$seeds" "$specs" "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, sys
tmp, seeds, specs, before, after = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4], sys.argv[5]
live = json.load(open("bench/results/lm_demo_cpu.json"))
runs = []
for seed in range(seeds):
    live_kd = live["summary"]["bits_per_byte"]["kd"][seed] if seed < len(live["summary"]["bits_per_byte"]["kd"]) else None
    for spec in specs:
        r = json.load(open(f"{tmp}/seed{seed}_{spec.replace(':', '')}.json"))
        m = r["models"]
        runs.append({
            "seed": seed,
            "cache": r["teacher_cache"],
            "teacher_bits_per_byte": m["teacher"]["bits_per_byte"],
            "scratch_bits_per_byte": m["student_scratch"]["bits_per_byte"],
            "cached_kd_bits_per_byte": m["student_kd"]["bits_per_byte"],
            "live_kd_bits_per_byte_recorded": live_kd,
            "relative_to_live_kd": None if live_kd is None else m["student_kd"]["bits_per_byte"] / live_kd - 1,
            "cached_kd_agreement": m["student_kd"]["agreement"],
            "scratch_samples_per_s": m["student_scratch"]["train_samples_per_s"],
            "cached_kd_samples_per_s": m["student_kd"]["train_samples_per_s"],
            "step_cost_vs_text_alone": m["student_scratch"]["train_samples_per_s"] / m["student_kd"]["train_samples_per_s"],
        })
out = {"what": "kdistill demo --task lm --teacher-cache SPEC (defaults otherwise); the live-teacher KD numbers are "
               "bench/results/lm_demo_cpu.json's, made with the same teacher (seed 0's, retrained bitwise: compare "
               "teacher_bits_per_byte)",
       "machine": {"cores": 2, "omp_wait_policy": "active (the kdistill command's default)",
                   "loadavg_before_after": [before, after]},
       "runs": runs}
json.dump(out, open("bench/results/lm_cache_cpu.json", "w"), indent=2)
print(json.dumps(runs, indent=1))
PY
