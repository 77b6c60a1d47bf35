#!/usr/bin/env python3
"""Accuracy of bf16 against fp32 on the demo (Fashion-MNIST, MLP 784-1200-1200-10 teacher, MLP-64
student, 3,000 labels, the demo's defaults), paired by seed. Per seed the teacher is trained once
in fp32 and shared by both runs. The fp32 run then distils in fp32. The bf16 run distils with the
teacher in bf16 and the student's compute in bf16, and measures how often the bf16 teacher's
top-1 agrees with the fp32 teacher's on the test images. Writes bench/results/bf16_accuracy_cpu.json."""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kdistill", default=os.path.join(HERE, "..", "build", "kdistill"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bf16_accuracy_cpu.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            row = {"seed": seed}
            weights = os.path.join(tmp, f"teacher{seed}.pt")
            for precision in ("fp32", "bf16"):
                report = os.path.join(tmp, f"r{seed}{precision}.json")
                subprocess.run([args.kdistill, "demo", "--seed", str(seed), "--precision", precision,
                                "--teacher-weights", weights, "--report", report, "--batch", "1"],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                r = json.load(open(report))
                row[precision] = {k: r["models"][k].get("accuracy") for k in ("teacher", "student_scratch", "student_kd")}
                row[precision]["kd_train_samples_per_s"] = r["models"]["student_kd"]["train_samples_per_s"]
                if precision == "bf16":
                    row["teacher_bf16_agreement_with_fp32"] = r["models"]["teacher"]["agreement_with_fp32"]
                    row["teacher_fp32_accuracy"] = r["models"]["teacher"]["accuracy_fp32"]
            rows.append(row)
            print(json.dumps(row))
    fp32 = [r["fp32"]["student_kd"] for r in rows]
    bf16 = [r["bf16"]["student_kd"] for r in rows]
    diff = [b - a for a, b in zip(fp32, bf16)]
    out = {
        "what": "kdistill demo defaults (3,000 labels, T=2, alpha=0.9, 10 student epochs), one fp32 teacher per seed; "
                "student_kd accuracy on the 10,000 test images with fp32 training vs bf16 (bf16 teacher and bf16 "
                "student compute); paired by seed",
        "rows": rows,
        "kd_accuracy_fp32_mean": statistics.mean(fp32),
        "kd_accuracy_bf16_mean": statistics.mean(bf16),
        "difference_mean": statistics.mean(diff),
        "difference_std": statistics.stdev(diff) if len(diff) > 1 else 0.0,
        "paired_t_p": float(stats.ttest_rel(bf16, fp32).pvalue) if len(diff) > 1 else None,
        "teacher_bf16_agreement_with_fp32_min": min(r["teacher_bf16_agreement_with_fp32"] for r in rows),
    }
    json.dump(out, open(args.out, "w"), indent=2)
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
