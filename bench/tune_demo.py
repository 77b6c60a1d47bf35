#!/usr/bin/env python3
"""Tunes the demo's distillation recipe on the training data only.

Every configuration runs `kdistill demo --validation 10000`: the teacher and the students train on
the first 50,000 training images and are scored on the last 10,000; the test set is never read.
Each (teacher, teacher epochs, seed) teacher is trained once and reused (--teacher-weights, kept in
--work so that a later call goes on where an earlier one stopped). The demo runs with --offline:
the teacher's logits are computed once per run instead of at every step (the same targets up to
rounding, since the demo has no augmentation), which makes a CNN teacher affordable.

A grid is given per call, e.g.

    tune_demo.py --case labels_all --seeds 0,1 \
        --grid "teacher=mlp:1200,1200;student=mlp:64;temperature=1,2,4;alpha=0.3,0.5;lr=0.05;epochs=10"

Every run is appended to --log (JSON lines; a configuration already there is not run again), and
--out is rewritten with every run so far and, per case and student, the pick: among the
configurations run on the most distinct seeds, the one with the best mean distilled-student
accuracy (run the candidates on the same seeds: the rule does not check that their seeds agree).
Several teachers or students in a grid are separated by `|`, numbers by `,`.
The baseline (student from labels alone, same seed and steps) is recorded beside each run so that
a pick can be read against it, but the pick is made on the distilled student alone.
"""
import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {"labels_3000": 3000, "labels_all": 0}
TEACHER_EPOCHS = {"cnn": 8}  # unless the grid sets teacher_epochs: the reference CNN teacher; MLPs the demo's 10
KEYS = ("teacher", "teacher_epochs", "student", "temperature", "alpha", "lr", "epochs")


def parse_grid(text):
    grid = {"teacher": ["mlp:1200,1200"], "teacher_epochs": [None], "student": ["mlp:64"], "temperature": [2.0],
            "alpha": [0.9], "lr": [0.05], "epochs": [10]}
    for part in filter(None, text.split(";")):
        key, _, values = part.partition("=")
        if key not in grid:
            sys.exit(f"tune_demo.py: unknown grid key {key!r} (expected one of {', '.join(grid)})")
        if key in ("teacher", "student"):
            grid[key] = values.split("|")
        elif key in ("epochs", "teacher_epochs"):
            grid[key] = [int(v) for v in values.split(",")]
        else:
            grid[key] = [float(v) for v in values.split(",")]
    return grid


def config_key(row):
    return tuple(row[k] for k in KEYS)


def load_log(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by an interrupted run: that run is redone
                    pass
    for r in rows:
        r.setdefault("student", "mlp:64")  # runs logged before the student was a grid key
    return rows


def summarise(rows):
    out = {}
    for case in CASES:
        by_config = {}
        for r in rows:
            if r["case"] == case:
                by_config.setdefault(config_key(r), []).append(r)
        configs = []
        for key, runs in by_config.items():
            seeds = sorted(r["seed"] for r in runs)
            kd = [r["student_kd"] for r in runs]
            gain = [r["student_kd"] - r["student_scratch"] for r in runs]
            configs.append({**dict(zip(KEYS, key)), "seeds": seeds, "student_kd_mean": statistics.mean(kd),
                            "student_scratch_mean": statistics.mean(r["student_scratch"] for r in runs),
                            "gain_points_mean": round(100 * statistics.mean(gain), 3)})
        if not configs:
            continue
        picks = {}
        for student in sorted({c["student"] for c in configs}):
            mine = [c for c in configs if c["student"] == student]
            most = max(len(set(c["seeds"])) for c in mine)
            picks[student] = max((c for c in mine if len(set(c["seeds"])) == most),
                                 key=lambda c: c["student_kd_mean"])
        out[case] = {"labels": CASES[case], "configs": sorted(configs, key=lambda c: -c["student_kd_mean"]),
                     "picks": picks}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kdistill", default=os.path.join(HERE, "..", "build", "kdistill"))
    ap.add_argument("--case", choices=sorted(CASES), required=True)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--grid", default="")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "kdistill-tune"),
                    help="where trained teachers are kept between calls")
    ap.add_argument("--live", dest="offline", action="store_false",
                    help="run the teacher at every step instead of caching its logits once (--offline; the same "
                         "targets, since the demo has no augmentation, so runs of either kind are comparable)")
    ap.add_argument("--log", default=os.path.join(HERE, "results", "demo_tuning_cpu.jsonl"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "demo_tuning_cpu.json"))
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    grid = parse_grid(args.grid)
    os.makedirs(args.work, exist_ok=True)
    rows = load_log(args.log)
    done = {(r["case"], r["seed"]) + config_key(r) for r in rows}
    for seed, teacher, teacher_epochs, student, t, a, lr, epochs in itertools.product(
            seeds, grid["teacher"], grid["teacher_epochs"], grid["student"], grid["temperature"], grid["alpha"],
            grid["lr"], grid["epochs"]):
        if teacher_epochs is None:
            teacher_epochs = TEACHER_EPOCHS.get(teacher.split(":")[0], 10)
        row = {"case": args.case, "seed": seed, "teacher": teacher, "teacher_epochs": teacher_epochs,
               "student": student, "temperature": t, "alpha": a, "lr": lr, "epochs": epochs,
               "offline": args.offline}
        if (args.case, seed) + config_key(row) in done:
            continue
        weights = os.path.join(args.work, f"teacher-{teacher.replace(':', '_').replace(',', '-')}-"
                                          f"e{row['teacher_epochs']}-s{seed}.pt")
        report = os.path.join(args.work, f"report-{os.getpid()}.json")  # calls may share --work
        cmd = [args.kdistill, "demo", "--validation", "10000", "--bench-seconds", "0.02", "--batch", "1",
               "--seed", str(seed), "--teacher", teacher, "--student", student, "--epochs-teacher", str(row["teacher_epochs"]),
               "--teacher-weights", weights, "--labels", str(CASES[args.case]), "--temperature", str(t),
               "--alpha", str(a), "--lr", str(lr), "--epochs-student", str(epochs), "--report", report]
        if args.offline:
            cmd.append("--offline")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(report) as f:
            m = json.load(f)["models"]
        os.remove(report)
        row.update(teacher_accuracy=m["teacher"]["accuracy"], student_scratch=m["student_scratch"]["accuracy"],
                   student_kd=m["student_kd"]["accuracy"], agreement_kd=m["student_kd"].get("agreement"))
        rows.append(row)
        done.add((args.case, seed) + config_key(row))
        with open(args.log, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), file=sys.stderr, flush=True)
    out = {"protocol": "validation = last 10,000 training images; teacher and students train on the first "
                       "50,000; test set unused; every run is in demo_tuning_cpu.jsonl",
           "cases": summarise(rows)}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps({c: v["picks"] for c, v in out["cases"].items()}, indent=2))


if __name__ == "__main__":
    main()
