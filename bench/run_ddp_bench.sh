#!/usr/bin/env bash
# Data-parallel training on this machine (issue 21's targets): throughput of `kdistill train` with
# 1 process (1 and 2 threads) and with `--nproc 2` (1 thread each, c10d Gloo over 127.0.0.1),
# and the all-reduce's bytes and seconds per step against the step's, from each run's manifest.
# Three workloads on Fashion-MNIST (60,000 images, one epoch, global batch 256): the demo's MLP
# teacher (784-1200-1200-10) distilled live into MLP-64; MLP-64 from labels alone; and the
# teacher itself from labels (9.5 MB of gradients, where overlapping the all-reduce with
# backward has the most to hide). The 2-process runs of the two larger workloads sweep the
# gradient bucket size (`distributed: {bucket_mb: X}`; 1000 holds everything in one bucket, which
# starts when backward ends; a bucket closes once it holds X MiB, so a large layer is a bucket). Rounds are interleaved; medians are reported. Also PyTorch's own
# Gloo all-reduce of the same bytes (bench/gloo_allreduce.py), the floor under the all-reduce.
# Run it on an idle machine.
# Usage: bench/run_ddp_bench.sh [build-dir] [rounds]  -> bench/results/ddp_cpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-3}
default_mb=1  # TrainerOptions::bucket_mb's default
sweep="1000 1 0.01"  # teacher: 1, 2 and 3 buckets; MLP-64: 1, 1 and 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 bench/make_models.py "$tmp" > /dev/null
config() {  # name threads student teacher-line bucket_mb
  cat > "$tmp/$1.yaml" <<YAML
seed: 0
threads: $2
data: {format: idx, path: /usr/share/datasets/fashion-mnist}
$4
student: {torchscript: $tmp/$3}
distributed: {bucket_mb: $5}
train: {epochs: 1, batch_size: 256, lr: 0.05, schedule: cosine, log_every: 0}
output: $tmp/runs/$1
YAML
}
setups() {  # workload: processes x threads, and the 2-process runs' bucket sizes
  if [ "$1" = labels ]; then echo "1x1 1x2 2x1:$default_mb"; return; fi
  echo "1x1 1x2" $(for mb in $sweep; do echo "2x1:$mb"; done)
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$rounds"); do
  for workload in kd labels teacher; do
    teacher="" student=student_mlp64.pt
    [ "$workload" = kd ] && teacher="teacher: {torchscript: $tmp/teacher_mlp.pt}"
    [ "$workload" = teacher ] && student=teacher_mlp.pt
    for setup in $(setups $workload); do
      name="${workload}_${setup}_$round"
      procs=${setup%%x*}
      threads=${setup#*x}
      threads=${threads%%:*}
      mb=$default_mb
      [[ "$setup" == *:* ]] && mb=${setup#*:}
      config "$name" "$threads" "$student" "$teacher" "$mb"
      args=(train --config "$tmp/$name.yaml")
      [ "$procs" -gt 1 ] && args+=(--nproc "$procs")
      "$build/kdistill" "${args[@]}" > /dev/null 2> "$tmp/$name.log"
    done
  done
done
# PyTorch's own Gloo all-reduce of the same bytes (the gradients of MLP-64, then of the teacher,
# with the loss values), in one flat tensor.
/usr/bin/python3 bench/gloo_allreduce.py 203576 9580792 > "$tmp/floor.json" 2> /dev/null
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/python3 - "$tmp" "$rounds" "$load_before" "$load_after" "${OMP_WAIT_POLICY:-unset: the kdistill command waits actively}" \
  "$default_mb" "$(setups kd)" "$(setups labels)" "$(setups teacher)" <<'PY'
import json, os, platform, statistics, subprocess, sys
tmp, rounds, before, after, policy, default_mb = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
setups = dict(zip(("kd", "labels", "teacher"), sys.argv[7:10]))
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                     text=True).stdout.strip()
out = {"what": "kdistill train, 1 epoch of Fashion-MNIST (60,000 images), global batch 256; processes x threads"
               "[:gradient bucket MiB]; medians over interleaved rounds",
       "machine": {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform()},
       "omp_wait_policy": policy, "backend": "gloo over 127.0.0.1", "rounds": rounds,
       "loadavg_before": before, "loadavg_after": after,
       "python_gloo_allreduce_ms": json.load(open(f"{tmp}/floor.json")), "workloads": {}}
print("PyTorch's Gloo all-reduce, 2 processes:", out["python_gloo_allreduce_ms"], "ms")
default = "2x1:" + default_mb
for workload in ("kd", "labels", "teacher"):
    rows = {}
    for setup in setups[workload].split():
        ms = [json.load(open(f"{tmp}/runs/{workload}_{setup}_{r}/manifest.json"))["metrics"] for r in range(1, rounds + 1)]
        row = {"samples_per_s": [round(m["train_samples_per_s"]) for m in ms]}
        row["median_samples_per_s"] = statistics.median(row["samples_per_s"])
        if "distributed" in ms[0]:
            d = [m["distributed"] for m in ms]
            row["bucket_mb"] = float(setup.split(":")[1])
            row["allreduce_bytes_per_step"] = d[0]["allreduce_bytes_per_step"]
            row["allreduce_buckets"] = d[0]["allreduce_buckets"]
            row["buckets_in_backward"] = round(d[0]["buckets_in_backward"], 3)
            row["median_step_ms"] = round(1000 * statistics.median(x["step_s"] for x in d), 3)
            row["median_allreduce_ms"] = round(1000 * statistics.median(x["allreduce_s_per_step"] for x in d), 3)
            row["allreduce_share"] = round(row["median_allreduce_ms"] / row["median_step_ms"], 3)
        rows[setup] = row
        print(f"{workload:7s} {setup:8s}: " + " ".join(f"{v:8d}" for v in row["samples_per_s"]) +
              f"  median {row['median_samples_per_s']:8.0f} samples/s" +
              (f"  all-reduce {row['median_allreduce_ms']} of {row['median_step_ms']} ms per step "
               f"({row['allreduce_bytes_per_step']} bytes, {row['allreduce_buckets']} buckets, "
               f"{row['buckets_in_backward']:.0%} started in backward)" if "median_step_ms" in row else ""))
    rows["default_bucket_mb"] = float(default_mb)
    rows["speedup_2x1_over_1x2"] = round(rows[default]["median_samples_per_s"] / rows["1x2"]["median_samples_per_s"], 3)
    rows["speedup_2x1_over_1x1"] = round(rows[default]["median_samples_per_s"] / rows["1x1"]["median_samples_per_s"], 3)
    out["workloads"][workload] = rows
os.makedirs("bench/results", exist_ok=True)
with open("bench/results/ddp_cpu.json", "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
PY
