#!/usr/bin/env python3
"""The demo's recorded result: the tuned recipes (bench/tune_demo.py, picked on held-out training
images) judged once on the test set over several seeds, for the scarce-label case (3,000 labels,
T=2, alpha=0.9, 10 student epochs) and the all-labels case (its recipes in CASES below). Each seed's teacher
is trained once and shared by the cases that use it. Writes bench/results/demo_seeds_cpu.json and prints a
Markdown table.

`--cases` runs only some cases; the rows already recorded for the others are kept. `--add` also
keeps the recorded seeds of the cases that run and adds new ones (training is deterministic on
the CPU, so earlier seeds need not run again)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {"labels_3000": ["--labels", "3000", "--temperature", "2", "--alpha", "0.9", "--epochs-student", "10"],
         # Third search's pick: the CNN teacher, its logits computed once (--offline: the same targets).
         "labels_all": ["--labels", "0", "--teacher", "cnn", "--epochs-teacher", "8", "--temperature", "1",
                        "--alpha", "0.9", "--epochs-student", "30", "--offline"],
         # Second search's pick with the demo's MLP teacher, kept as recorded.
         "labels_all_mlp_teacher": ["--labels", "0", "--temperature", "2", "--alpha", "0.3", "--epochs-student", "30"]}


def flag_value(flags, name, default):
    return flags[flags.index(name) + 1] if name in flags else default


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kdistill", default=os.path.join(HERE, "..", "build", "kdistill"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "demo_seeds_cpu.json"))
    ap.add_argument("--cases", default=",".join(CASES), help="cases to run; the others keep their recorded rows")
    ap.add_argument("--add", action="store_true",
                    help="keep the seeds already recorded for the cases that run, and add these")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = args.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"--cases: unknown case(s) {', '.join(unknown)} (expected {', '.join(CASES)})")
    runs = {c: [] for c in CASES}
    if os.path.exists(args.out):
        with open(args.out) as f:
            old = json.load(f)["runs"]
        for case in CASES:
            if case not in cases or args.add:
                runs[case] = old.get(case, [])
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for case in cases:
                flags = CASES[case]
                if any(r["seed"] == seed for r in runs[case]):
                    continue
                report = os.path.join(tmp, "r.json")
                # Cases with the same teacher (spec and epochs) share its training per seed.
                teacher = "-".join(flag_value(flags, k, d) for k, d in (("--teacher", "mlp:1200,1200"),
                                                                        ("--epochs-teacher", "10")))
                weights = os.path.join(tmp, f"teacher-{teacher.replace(':', '_').replace(',', '_')}-s{seed}.pt")
                cmd = [args.kdistill, "demo", "--seed", str(seed), "--teacher-weights", weights,
                       "--bench-seconds", "0.2", "--report", report] + flags
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                m = json.load(open(report))["models"]
                row = {"seed": seed, "teacher": m["teacher"]["accuracy"], "student_scratch": m["student_scratch"]["accuracy"],
                       "student_kd": m["student_kd"]["accuracy"], "agreement_kd": m["student_kd"]["agreement"],
                       "agreement_scratch": m["student_scratch"]["agreement"], "recipe": " ".join(flags)}
                runs[case].append(row)
                print(case, json.dumps(row), file=sys.stderr, flush=True)
    summary = {}
    for case, rows in runs.items():
        if not rows:  # a case never run (e.g. --cases on a fresh --out)
            continue
        s = {}
        s["seeds"] = sorted(r["seed"] for r in rows)
        s["recipes"] = sorted({r.get("recipe", "unrecorded") for r in rows})
        for key in ("teacher", "student_scratch", "student_kd", "agreement_kd", "agreement_scratch"):
            v = [r[key] for r in rows]
            s[key] = {"mean": statistics.mean(v), "min": min(v), "max": max(v), "stdev": statistics.stdev(v) if len(v) > 1 else 0}
        gains = [r["student_kd"] - r["student_scratch"] for r in rows]
        s["kd_gain_points"] = {"mean": 100 * statistics.mean(gains), "min": 100 * min(gains), "max": 100 * max(gains)}
        s["retention"] = statistics.mean(r["student_kd"] / r["teacher"] for r in rows)
        summary[case] = s
    out = {"protocol": "kdistill demo defaults (teacher mlp:1200,1200 10 epochs unless the recipe names another; "
                       "students mlp:64; SGD momentum 0.9, lr 0.05, cosine, batch 128), recipe tuned on held-out "
                       "training images, judged once on the 10,000 test images",
           "seeds": sorted({r["seed"] for rows in runs.values() for r in rows}), "runs": runs, "summary": summary}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print("| case | teacher | from labels | distilled | gain (points) | retention |")
    print("|---|---:|---:|---:|---:|---:|")
    for case, s in summary.items():
        pm = lambda k: f"{100 * s[k]['mean']:.2f}% ({100 * s[k]['min']:.2f}–{100 * s[k]['max']:.2f})"
        g = s["kd_gain_points"]
        print(f"| {case} | {pm('teacher')} | {pm('student_scratch')} | {pm('student_kd')} | "
              f"{g['mean']:+.2f} ({g['min']:+.2f}–{g['max']:+.2f}) | {100 * s['retention']:.1f}% |")


if __name__ == "__main__":
    main()
