#!/usr/bin/env bash
# Sparse teacher caches at V = 32,000 (issue: sparse caches that stream): runs
# build/bench/sparse_cache_bench several times and keeps the median of every number. Run it on an
# idle machine: nothing else building, testing or benchmarking.
# Usage: bench/run_sparse_cache_bench.sh [build-dir] [rounds]  -> bench/results/sparse_cache_cpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$rounds"); do
  "$build/bench/sparse_cache_bench" --dir "$tmp/scratch" --out "$tmp/round$round.json"
done
/usr/bin/python3 - "$tmp" "$rounds" "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, statistics, sys
tmp, rounds, before, after = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
runs = [json.load(open(f"{tmp}/round{r}.json")) for r in range(1, rounds + 1)]

def median(values):
    first = values[0]
    if isinstance(first, dict):
        return {k: median([v[k] for v in values]) for k in first}
    if isinstance(first, list):
        return [median([v[i] for v in values]) for i in range(len(first))]
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        return statistics.median(values)
    return first

out = median(runs)
out["conditions"]["rounds"] = rounds
out["conditions"]["numbers"] = "median over the rounds"
out["conditions"]["loadavg_before_after"] = [before, after]
out["conditions"]["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
json.dump(out, open("bench/results/sparse_cache_cpu.json", "w"), indent=2)
print("wrote bench/results/sparse_cache_cpu.json")
PY
