#!/usr/bin/env python3
"""Top-k teacher caches on Fashion-MNIST: the accuracy each k keeps against dense-cache KD, and its bytes.

The setup is the methods table's (bench/run_methods_table.py, whose work files this reuses): the
demo's CNN teacher trained on all 60,000 images (seed 0), MLP-64 students, and vanilla KD with the
recipe the methods table tuned on validation data (the `kd@0` pick: T = 2, weight 0.5, plus 0.5
cross-entropy; 30 epochs). Only the teacher block changes: `teacher: {cache: top{k}.h5}`, a cache
written by `kdistill cache-teacher --format topk --top-k k` from the same teacher. k is not tuned:
every k is reported, each judged once on the test set, with the seeds of the dense-KD row.

Per k: test accuracy (mean +- std over the seeds), the paired difference from dense-cache KD with
its t-test p-value, and the cache's stored bytes per sample (its `bytes_per_row` attribute: chunked
and gzip-compressed) against the dense cache's.

Usage: /usr/bin/python3 bench/run_topk_table.py [--ks 1,2,3,4] [--seeds 0,1,2,3,4]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_methods_table as mt  # noqa: E402


def bytes_per_row(path):
    code = f"import h5py\nf = h5py.File({path!r}, 'r')\nprint(float(f.attrs.get('bytes_per_row', 0)) or " \
           f"sum(f[k].id.get_storage_size() for k in f) / f[list(f)[0]].shape[0])\n"
    return float(subprocess.run(["/usr/bin/python3", "-c", code], check=True, capture_output=True, text=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ks", default="1,2,3,4")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--kdistill", default=os.path.join(HERE, "..", "build", "kdistill"))
    ap.add_argument("--work", default=os.path.join(HERE, "..", "build", "methods"))
    ap.add_argument("--methods-results", default=os.path.join(HERE, "results", "methods_cpu.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "topk_cpu.json"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    ks = [int(k) for k in args.ks.split(",")]
    picks = json.load(open(args.methods_results))["picks"]
    recipe = mt.GRID["kd"][picks["kd@0"]]
    mt.make_models(args.work, seeds)
    model, dense_cache = mt.teacher(args, 0, "test")
    log = os.path.join(args.work, "log.txt")

    dense = [mt.run_recipe(args, "test", "kd", recipe, s, 0) for s in seeds]
    rows = {"dense": {"bytes_per_row": bytes_per_row(dense_cache), "runs": dense}}
    student, loss, extra = recipe
    for k in ks:
        cache = os.path.join(args.work, f"cache_test_s0_top{k}.h5")
        if not os.path.exists(cache):
            mt.sh([args.kdistill, "cache-teacher", "--teacher", model, "--data", "idx:" + mt.DATA, "--out", cache,
                   "--format", "topk", "--top-k", str(k), "--threads", "2"], log)
        runs = []
        for s in seeds:
            config = mt.student_config(args, "test", s, student, loss, {"cache": cache}, 0, extra)
            r = mt.train(args, f"test_top{k}_s{s}", config)
            runs.append({"seed": s, "accuracy": r["models"]["student_kd"]["accuracy"],
                         "train_samples_per_s": r["models"]["student_kd"].get("train_samples_per_s")})
        rows[f"top{k}"] = {"bytes_per_row": bytes_per_row(cache), "runs": runs}

    lines = ["| teacher cache | bytes per sample (of dense) | test accuracy | vs dense-cache KD |",
             "|---|---:|---:|---:|"]
    for name, row in rows.items():
        acc = [r["accuracy"] for r in row["runs"]]
        row["mean"], row["std"] = statistics.mean(acc), statistics.stdev(acc)
        row["vs_dense"] = None if name == "dense" else mt.paired(dense, row["runs"])
        g = row["vs_dense"]
        gain = "—" if not g else f"{100 * g['mean']:+.2f} ± {100 * g['std']:.2f} (p = {g['p']:.2g})"
        share = row["bytes_per_row"] / rows["dense"]["bytes_per_row"]
        lines.append(f"| {name} | {row['bytes_per_row']:.1f} ({100 * share:.0f}%) | {100 * row['mean']:.2f}% ± "
                     f"{100 * row['std']:.2f} (n={len(acc)}) | {gain} |")
    results = {"protocol": __doc__, "recipe": {"student": student, "loss": loss, **extra}, "seeds": seeds,
               "machine": {"cores": os.cpu_count(), "threads": 2,
                           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "active (kdistill's default)")},
               "rows": rows}
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    table = "\n".join(lines) + "\n"
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
