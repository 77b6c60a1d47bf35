#!/usr/bin/env bash
# The language-model demo (`kdistill demo --task lm`, its defaults) over seeds on an idle machine:
# seed 0 trains the teacher and saves it, the other seeds reuse it, so that each seed's two
# students (from the text alone, distilled) form a pair. Writes bench/results/lm_demo_cpu.json
# with every report and the paired statistics of the distilled student's gain; with a divergence
# other than kl (the soft term, `--divergence`), bench/results/lm_demo_<divergence>_cpu.json.
# Usage: bench/run_lm_demo.sh [build-dir] [seeds] [divergence] [teacher.pt to reuse]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
seeds=${2:-3}
divergence=${3:-kl}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
teacher=${4:-$tmp/teacher.pt}
dest=bench/results/lm_demo_cpu.json
if [ "$divergence" != kl ]; then dest=bench/results/lm_demo_${divergence}_cpu.json; fi
for seed in $(seq 0 $((seeds - 1))); do
  "$build/kdistill" demo --task lm --seed "$seed" --divergence "$divergence" --teacher-weights "$teacher" \
    --report "$tmp/seed$seed.json" > "$tmp/seed$seed.log" 2>&1
done
/usr/bin/python3 - "$tmp" "$seeds" "$dest" "$divergence" <<'PY'
import json, os, platform, statistics, sys
from scipy import stats
tmp, seeds, dest, divergence = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
reports = [json.load(open(f"{tmp}/seed{s}.json")) for s in range(seeds)]
def series(model, key):
    return [r["models"][model][key] for r in reports]
summary = {}
for key, better in (("bits_per_byte", "lower"), ("accuracy", "higher"), ("agreement", "higher")):
    a, b = series("student_scratch", key), series("student_kd", key)
    d = [y - x for x, y in zip(a, b)]
    summary[key] = {"better": better, "scratch": a, "kd": b, "gain_mean": statistics.mean(d),
                    "gain_std": statistics.stdev(d) if len(d) > 1 else 0.0,
                    "paired_t_p": float(stats.ttest_rel(b, a).pvalue) if len(d) > 1 else None}
flags = open("/proc/cpuinfo").read().split("flags")[1].split("\n")[0]
out = {"what": f"kdistill demo --task lm --divergence {divergence}, other settings default; seed 0 trains the "
                "teacher (unless one is given), later seeds reuse it",
       "machine": {"cpu": platform.processor() or "x86_64", "cores": os.cpu_count(),
                   "avx512_bf16": "avx512_bf16" in flags,
                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "active (the kdistill command's default)")},
       "summary": summary, "reports": reports}
json.dump(out, open(dest, "w"), indent=1)
print(json.dumps(summary, indent=1))
PY
