#!/usr/bin/env python3
"""Tunes the demo's distillation recipe on the training data only.

Every configuration runs `kdistill demo --validation 10000`: the students train on the first
50,000 training images and are scored on the last 10,000; the test set is never read. The
teacher is trained once and reused (--teacher-weights). Writes bench/results/demo_tuning_cpu.json
with every configuration's validation accuracies and the pick (best distilled student) for the
scarce-label case (--labels 3000) and the all-labels case (--labels 0).
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(kdistill, args, report):
    cmd = [kdistill, "demo", "--validation", "10000", "--bench-seconds", "0.05", "--report", report] + args
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(report) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kdistill", default=os.path.join(HERE, "..", "build", "kdistill"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "demo_tuning_cpu.json"))
    args = ap.parse_args()
    grids = {
        "labels_3000": {"labels": 3000, "temperature": [2, 4, 8], "alpha": [0.5, 0.9], "lr": [0.05]},
        "labels_all": {"labels": 0, "temperature": [2, 4], "alpha": [0.3, 0.7], "lr": [0.05]},
    }
    out = {"protocol": "validation = last 10,000 training images; students train on the first 50,000; "
                       "test set unused; seed 0; teacher mlp:1200,1200 trained once",
           "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        teacher = os.path.join(tmp, "teacher.pt")
        for case, g in grids.items():
            rows = []
            for t, a, lr in itertools.product(g["temperature"], g["alpha"], g["lr"]):
                r = run(args.kdistill, ["--labels", str(g["labels"]), "--temperature", str(t), "--alpha", str(a),
                                        "--lr", str(lr), "--teacher-weights", teacher], os.path.join(tmp, "r.json"))
                m = r["models"]
                row = {"temperature": t, "alpha": a, "lr": lr, "teacher": m["teacher"]["accuracy"],
                       "student_scratch": m["student_scratch"]["accuracy"], "student_kd": m["student_kd"]["accuracy"]}
                rows.append(row)
                print(case, json.dumps(row), file=sys.stderr, flush=True)
            best = max(rows, key=lambda r: r["student_kd"])
            out["cases"][case] = {"labels": g["labels"], "runs": rows, "pick": best}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({c: v["pick"] for c, v in out["cases"].items()}, indent=2))


if __name__ == "__main__":
    main()
