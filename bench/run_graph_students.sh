#!/usr/bin/env bash
# Serving real students (bench/graph_students.py: a ResNet under 20k parameters, a MobileNetV2-style
# student, the MLP-64 written as a class), each trained on Fashion-MNIST from its labels, then
# exported from its TorchScript graph to the Eigen runtime:
#  - accuracy on the 10,000 test images through LibTorch and through the runtime, and the share of
#    images where the two predict the same class (agreement 1 means identical to the image);
#  - latency at batch 1, 8 and 64: the runtime (one calling thread), LibTorch with 1 and with 2
#    threads, and LibTorch after optimize_for_inference (2 threads); 3 interleaved rounds, medians.
# Writes bench/results/graph_students_cpu.json. Run it on an idle machine.
# Usage: bench/run_graph_students.sh [build-dir] [epochs]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
epochs=${2:-2}
data=/usr/share/datasets/fashion-mnist
out=bench/results
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 bench/graph_students.py "$tmp" > "$tmp/params.txt"
/usr/bin/python3 bench/make_models.py "$tmp"  # teacher_mlp.pt, the demo's teacher, as the bench reference
students="resnet mobilenet mlp_class"
for s in $students; do
  cat > "$tmp/$s.yaml" <<YAML
seed: 0
threads: 2
data: {format: idx, path: $data}
student: {torchscript: $s.pt}
loss: [{kind: ce}]
train: {epochs: $epochs, batch_size: 128, optimizer: sgd, lr: 0.05, momentum: 0.9, weight_decay: 5.0e-4,
        schedule: cosine}
output: run_$s
YAML
  start=$(date +%s)
  "$build/kdistill" train --config "$tmp/$s.yaml" > "$tmp/$s.train.log"
  echo "$s $(( $(date +%s) - start ))" >> "$tmp/train_seconds.txt"
  # The data reach both models already normalised, so the file stores no normalisation.
  "$build/kdistill" export --model "$tmp/run_$s/student.pt" --out "$tmp/$s.h5" > "$tmp/$s.export.txt"
  "$build/kdistill" eval --model "$tmp/run_$s/student.pt" --data "idx:$data" --json "$tmp/$s.torch_eval.json" > /dev/null
  "$build/kdistill" eval --model "$tmp/$s.h5" --data "idx:$data" --teacher "$tmp/run_$s/student.pt" \
    --json "$tmp/$s.eigen_eval.json" > /dev/null
done
bench() {  # student, round, name of the measurement, threads, flags...
  local s=$1 round=$2 name=$3 threads=$4
  shift 4
  "$build/kdistill" bench --teacher "$tmp/teacher_mlp.pt" --student "$tmp/run_$s/student.pt" --batch 1,8,64 \
    --threads "$threads" --min-seconds 1 "$@" --json "$tmp/$s.$round.$name.json" > /dev/null
}
for round in 1 2 3; do
  for s in $students; do
    bench "$s" "$round" 1 1 --runtimes torch,eigen
    bench "$s" "$round" 2 2 --runtimes torch
    bench "$s" "$round" 2.opt 2 --runtimes torch --optimize
  done
done
/usr/bin/python3 - "$tmp" "$out" "$students" <<'PY'
import json, os, platform, statistics, subprocess, sys
tmp, out, students = sys.argv[1], sys.argv[2], sys.argv[3].split()
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                     text=True).stdout.strip()
params = dict(line.split() for line in open(f"{tmp}/params.txt"))
seconds = dict(line.split() for line in open(f"{tmp}/train_seconds.txt"))
result = {"machine": {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(kdistill's default)")},
          "data": "Fashion-MNIST test set (10,000 images)", "students": {}}
batches = ("1", "8", "64")
for s in students:
    torch_eval = json.load(open(f"{tmp}/{s}.torch_eval.json"))
    eigen_eval = json.load(open(f"{tmp}/{s}.eigen_eval.json"))
    lat = {}
    def p50(file, model):
        return [json.load(open(f"{tmp}/{s}.{r}.{file}.json"))["models"][model]["latency_ms"] for r in (1, 2, 3)]
    for name, file, model in (("eigen_1_thread", "1", "student_eigen"), ("libtorch_1_thread", "1", "student"),
                              ("libtorch_2_threads", "2", "student"), ("libtorch_optimized_2_threads", "2.opt", "student")):
        runs = p50(file, model)
        lat[name] = {b: {"p50_ms": statistics.median(r[b]["p50"] for r in runs),
                         "p99_ms": statistics.median(r[b]["p99"] for r in runs),
                         "p50_runs_ms": [r[b]["p50"] for r in runs]} for b in batches}
    best_torch = {b: min(lat[k][b]["p50_ms"] for k in lat if k.startswith("libtorch")) for b in batches}
    result["students"][s] = {
        "params": int(params[s]), "train_seconds": int(seconds[s]),
        "accuracy_libtorch": torch_eval["accuracy"], "accuracy_eigen": eigen_eval["accuracy"],
        "agreement_eigen_vs_libtorch": eigen_eval["agreement"],
        "latency": lat,
        "eigen_p50_over_best_libtorch_p50": {b: lat["eigen_1_thread"][b]["p50_ms"] / best_torch[b] for b in batches},
        "export": open(f"{tmp}/{s}.export.txt").read(),
    }
json.dump(result, open(f"{out}/graph_students_cpu.json", "w"), indent=2)
print("| student | params | accuracy LibTorch | accuracy Eigen | same prediction | batch | Eigen p50 | LibTorch 1T | LibTorch 2T | optimized 2T | Eigen / best LibTorch |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s, r in result["students"].items():
    for b in batches:
        L = r["latency"]
        us = lambda k: f"{1000 * L[k][b]['p50_ms']:.1f} µs"
        head = (f"| {s} | {r['params']} | {100 * r['accuracy_libtorch']:.2f}% | {100 * r['accuracy_eigen']:.2f}% | "
                f"{100 * r['agreement_eigen_vs_libtorch']:.2f}% ") if b == "1" else "| | | | | "
        print(head + f"| {b} | {us('eigen_1_thread')} | {us('libtorch_1_thread')} | {us('libtorch_2_threads')} | "
              f"{us('libtorch_optimized_2_threads')} | {r['eigen_p50_over_best_libtorch_p50'][b]:.2f}x |")
PY
