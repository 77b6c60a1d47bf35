#!/usr/bin/env python3
"""The methods table: what each distillation method buys on Fashion-MNIST, and whether it is real.

Every run is a `kdistill train --config` run, so the table measures the library as users run it.

Setup
- Teacher: the demo's CNN (cnn:32,64 with a 256-unit hidden layer, dropout 0.2; 824,650
  parameters), 8 epochs from labels. Students: MLP-64 for the logit methods; cnn:8,16 for the feature
  methods (hints, attention transfer), with its own from-labels and KD rows.
- SGD, momentum 0.9, weight decay 5e-4, cosine, batch 128, lr 0.05. MLP students train for 30 epochs.
  CNN students train for 10. Logit methods read the teacher's logits from a cache (`kdistill
  cache-teacher`). Feature methods run the live teacher. The ensemble is three caches, each with
  weight 1.
- Tuning (`--phase tune`): a teacher trained on the first 50,000 training images. Every candidate
  recipe is scored on the last 10,000 (`data.validation`). Seeds come from --tune-seeds. The pick
  is the best mean validation accuracy. The 3-teacher ensemble and born-again are tuned on their own
  over vanilla KD's grid. With scarce labels (--labeled), the from-labels baselines also tune their
  number of epochs: 3,000 images make only 24 steps an epoch.
- Judging (`--phase test`): teachers trained on all 60,000 images (seeds 0, 1 and 2, for the
  ensemble). Each picked recipe runs once per seed (--seeds) and is scored on the 10,000 test
  images. Single-teacher rows use teacher 0. A seed sets the student's initial weights and the
  batch order.
- Per row: mean +- std over the seeds. Gains over the from-labels row and over vanilla KD come
  with the paired t-test p-value across seeds (the same seeds, hence the same initial weights).
  Also: training samples/s, the median over seeds.

Work files go under --work (teachers, caches, runs). An interrupted call goes on where it stopped,
because a finished run is never repeated. Results go to --out (JSON), with a Markdown table on
stdout.
"""
import argparse
import hashlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = "/usr/share/datasets/fashion-mnist"
TRAIN = {"batch_size": 128, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5.0e-4,
         "schedule": "cosine", "log_every": 1000, "checkpoint_every": 100000}
EPOCHS = {"mlp": 30, "cnn": 10, "teacher": 8}
# cnn:8,16 taps (Sequential indices): "2" the first ReLU [B, 8, 28, 28], "6" the second [B, 16, 14, 14].
# Teacher taps: "2" [B, 32, 28, 28], "6" [B, 64, 14, 14].


def kd(t, alpha):
    return [{"kind": "kd", "temperature": t, "weight": alpha}, {"kind": "ce", "weight": round(1 - alpha, 6)}]


def div(kind, t, w=0.9, **extra):
    return [dict({"kind": kind, "temperature": t, "weight": w}, **extra), {"kind": "ce", "weight": round(1 - w, 6)}]


def dkd(beta, t, warmup):
    return [{"kind": "dkd", "alpha": 1.0, "beta": beta, "temperature": t,
             "weight": {"schedule": "linear", "start": 0, "end": 1, "epochs": warmup}}, {"kind": "ce"}]


# Candidate recipes per method (tuned on validation). Each: (student, loss, extra config keys).
GRID = {
    "labels": [("mlp", None, {})],
    "kd": [("mlp", kd(t, a), {}) for t, a in itertools.product([1, 2, 4], [0.5, 0.9])],
    "reverse_kl": [("mlp", div("reverse_kl", t), {}) for t in [1, 2, 4]],
    "jsd": [("mlp", div("jsd", t, beta=b), {}) for t, b in itertools.product([1, 4], [0.1, 0.5, 0.9])],
    "tvd": [("mlp", div("tvd", t), {}) for t in [1, 2, 4]],
    "skew_kl": [("mlp", div("skew_kl", t, skew=s), {}) for t, s in itertools.product([1, 4], [0.1, 0.5])],
    "skew_reverse_kl": [("mlp", div("skew_reverse_kl", t, skew=s), {}) for t, s in itertools.product([1, 4], [0.1, 0.5])],
    "dkd": [("mlp", dkd(b, t, 3), {}) for t, b in itertools.product([1, 4], [1, 2, 8])],
    "cnn_labels": [("cnn", None, {})],
    "cnn_kd": [("cnn", kd(t, a), {}) for t, a in itertools.product([1, 4], [0.5, 0.9])],
    "hint": [("cnn", [{"kind": "ce"}, {"kind": "hint", "student": "6", "teacher": "6", "weight": w}], {}) for w in [0.1, 1.0]],
    "at": [("cnn", [{"kind": "ce"}, {"kind": "at", "student": ["2", "6"], "teacher": ["2", "6"], "weight": w}], {})
           for w in [100.0, 1000.0]],
}
# The 3-teacher ensemble and born-again are tuned on their own over vanilla KD's grid: the best
# recipe for one teacher need not be the best for an averaged one, or for a student's student.
GRID["ensemble3"] = GRID["kd"]
GRID["born_again2"] = GRID["kd"]
# With scarce labels the from-labels baselines see few samples per epoch (3,000 images: 24 steps),
# so their training length is tuned too; candidate 0 is the default length. Hints alone give the
# 57,000 unlabelled images no class signal, so hints on top of KD (T 1, alpha 0.9, cnn_kd's pick
# with 3,000 labels) are candidates too: FitNets' own second stage is KD.
SCARCE_GRID = {
    "labels": [("mlp", None, {})] + [("mlp", None, {"train": {"epochs": e}}) for e in (100, 300)],
    "cnn_labels": [("cnn", None, {})] + [("cnn", None, {"train": {"epochs": e}}) for e in (30, 100)],
    "hint": GRID["hint"] + [("cnn", kd(1, 0.9) + [{"kind": "hint", "student": "6", "teacher": "6", "weight": w}], {})
                            for w in [0.1, 1.0]],
}


def grid(method, labeled):
    return SCARCE_GRID[method] if labeled and method in SCARCE_GRID else GRID[method]


FEATURE_METHODS = ("hint", "at")
ORDER = ["labels", "kd", "reverse_kl", "jsd", "tvd", "skew_kl", "skew_reverse_kl", "dkd", "ensemble3", "born_again2",
         "cnn_labels", "cnn_kd", "hint", "at"]


def sh(cmd, log):
    with open(log, "a") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def make_models(work, seeds):
    """Untrained TorchScript models, one file per seed (the seed sets the initial weights)."""
    code = f"""
import torch, torch.nn as nn, os
def cnn(widths, fc, dropout):
    layers, c, side = [], 1, 28
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
        c, side = w, side // 2
    layers.append(nn.Flatten())
    if fc:
        layers += [nn.Linear(c * side * side, fc), nn.ReLU(), nn.Dropout(dropout), nn.Linear(fc, 10)]
    else:
        layers.append(nn.Linear(c * side * side, 10))
    return nn.Sequential(*layers)
for s in {sorted(set(seeds) | {0, 1, 2})}:
    for name, make in (("teacher", lambda: cnn([32, 64], 256, 0.2)), ("cnn", lambda: cnn([8, 16], 0, 0)),
                       ("mlp", lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)))):
        path = os.path.join({work!r}, f"init_{{name}}_s{{s}}.pt")
        if not os.path.exists(path):
            torch.manual_seed(1000 + s)
            torch.jit.script(make()).save(path)
"""
    subprocess.run(["/usr/bin/python3", "-c", code], check=True)


def train(args, name, config):
    """Runs one configured training (once: a finished run is read back). Returns its report."""
    out = os.path.join(args.work, "runs", name)
    report = os.path.join(out, "report.json")
    if not os.path.exists(report):
        if os.path.exists(out):
            subprocess.run(["rm", "-rf", out], check=True)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        config = dict(config, output=out, threads=2)
        path = out + ".json"
        with open(path, "w") as f:
            json.dump(config, f)
        t0 = time.time()
        sh([args.kdistill, "train", "--config", path], os.path.join(args.work, "log.txt"))
        print(f"  {name}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    with open(report) as f:
        return json.load(f)


def teacher(args, seed, phase):
    """A trained teacher (TorchScript) and its logit cache over the training images."""
    name = f"teacher_{phase}_s{seed}"
    data = {"format": "idx", "path": DATA}
    if phase == "tune":
        data["validation"] = 10000
    train(args, name, {"seed": seed, "data": data, "student": {"torchscript": os.path.join(args.work, f"init_teacher_s{seed}.pt")},
                       "train": dict(TRAIN, epochs=EPOCHS["teacher"])})
    model = os.path.join(args.work, "runs", name, "student.pt")
    cache = os.path.join(args.work, f"cache_{phase}_s{seed}.h5")
    if not os.path.exists(cache):
        sh([args.kdistill, "cache-teacher", "--teacher", model, "--data", "idx:" + DATA, "--out", cache, "--threads", "2"],
           os.path.join(args.work, "log.txt"))
    return model, cache


def student_config(args, phase, seed, student, loss, teacher_block, labeled, extra):
    data = {"format": "idx", "path": DATA, "labeled": labeled}
    if phase == "tune":
        data["validation"] = 10000
    c = {"seed": seed, "data": data, "student": {"torchscript": os.path.join(args.work, f"init_{student}_s{seed}.pt")},
         "train": dict(TRAIN, epochs=EPOCHS[student])}
    if loss is not None:
        c["loss"] = loss
        c["teacher"] = teacher_block
    c["train"].update(extra.get("train", {}))
    c.update({k: v for k, v in extra.items() if k != "train"})
    return c


def run_recipe(args, phase, method, recipe, seed, labeled):
    student, loss, extra = recipe
    model, cache = teacher(args, 0, phase)
    block = {"torchscript": model} if method in FEATURE_METHODS else {"cache": cache}
    if method == "ensemble3":
        block = {"ensemble": [{"cache": teacher(args, s, phase)[1], "weight": 1} for s in (0, 1, 2)]}
    if method == "born_again2":
        extra = dict(extra, generations=2)
    key = json.dumps([student, loss, extra, labeled], sort_keys=True)
    name = f"{phase}_{method}_s{seed}_l{labeled}_{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    r = train(args, name, student_config(args, phase, seed, student, loss, block, labeled, extra))
    models = r["models"]
    entry = models.get("student_gen2") or models.get("student_kd") or models.get("student_scratch")
    return {"seed": seed, "accuracy": entry["accuracy"], "train_samples_per_s": entry.get("train_samples_per_s"),
            "recipe": {"student": student, "loss": loss, **extra}}


def tune(args, results):
    picks = results.setdefault("picks", {})
    grid_log = results.setdefault("tuning", {})
    for method in args.methods:
        rows = []
        for i, recipe in enumerate(grid(method, args.labeled)):
            accs = [run_recipe(args, "tune", method, recipe, s, args.labeled)["accuracy"] for s in args.tune_seeds]
            rows.append({"candidate": i, "recipe": {"student": recipe[0], "loss": recipe[1], **recipe[2]}, "validation": accs,
                         "mean": statistics.mean(accs)})
            print(f"{method} candidate {i}: validation {statistics.mean(accs):.4f}", file=sys.stderr, flush=True)
        best = max(rows, key=lambda r: r["mean"])
        grid_log[f"{method}@{args.labeled}"] = rows
        picks[f"{method}@{args.labeled}"] = best["candidate"]


def judge(args, results):
    picks = results["picks"]
    table = results.setdefault("test", {})
    for method in args.methods:
        pick = picks.get(f"{method}@{args.labeled}")
        if pick is None:
            sys.exit(f"{method}: no tuned recipe with {args.labeled} labels; run --phase tune first")
        recipe = grid(method, args.labeled)[pick]
        seeds = args.seeds if recipe[0] == "mlp" else args.seeds[:args.cnn_seeds]
        table[f"{method}@{args.labeled}"] = [run_recipe(args, "test", method, recipe, s, args.labeled) for s in seeds]


def paired(a, b):
    """Mean and std of b - a over the shared seeds, and the paired t-test p-value."""
    sa, sb = {r["seed"]: r["accuracy"] for r in a}, {r["seed"]: r["accuracy"] for r in b}
    seeds = sorted(set(sa) & set(sb))
    d = [sb[s] - sa[s] for s in seeds]
    if len(d) < 2:
        return None
    p = 1.0 if all(x == 0 for x in d) else float(stats.ttest_rel([sb[s] for s in seeds], [sa[s] for s in seeds]).pvalue)
    return {"seeds": seeds, "mean": statistics.mean(d), "std": statistics.stdev(d), "p": p}


def summarise(results):
    test = results.get("test", {})
    summary = {}
    for key, rows in test.items():
        method, labeled = key.split("@")
        acc = [r["accuracy"] for r in rows]
        cnn = rows[0]["recipe"]["student"] == "cnn"
        base = test.get(("cnn_labels" if cnn else "labels") + "@" + labeled)
        ref = test.get(("cnn_kd" if cnn else "kd") + "@" + labeled)
        speed = [r["train_samples_per_s"] for r in rows if r.get("train_samples_per_s")]
        summary[key] = {"student": rows[0]["recipe"]["student"], "seeds": [r["seed"] for r in rows],
                        "mean": statistics.mean(acc), "std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                        "vs_labels": paired(base, rows) if base and base is not rows else None,
                        "vs_kd": paired(ref, rows) if ref and ref is not rows else None,
                        "train_samples_per_s": statistics.median(speed) if speed else None,
                        "recipe": rows[0]["recipe"]}
    results["summary"] = summary
    return summary


def markdown(summary):
    def gain(g):
        return "—" if not g else f"{100 * g['mean']:+.2f} ± {100 * g['std']:.2f} (p = {g['p']:.2g})"
    lines = ["| labels | row | student | test accuracy | vs from labels | vs vanilla KD | samples/s |",
             "|---|---|---|---:|---:|---:|---:|"]
    keys = sorted(summary, key=lambda k: (int(k.split("@")[1]) or 10**9, ORDER.index(k.split("@")[0])))
    for k in keys:
        s = summary[k]
        method, labeled = k.split("@")
        speed = f"{s['train_samples_per_s']:,.0f}" if s["train_samples_per_s"] else "—"
        lines.append(f"| {'all' if labeled == '0' else labeled} | {method} | {s['student']} | "
                     f"{100 * s['mean']:.2f}% ± {100 * s['std']:.2f} (n={len(s['seeds'])}) | {gain(s['vs_labels'])} | "
                     f"{gain(s['vs_kd'])} | {speed} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", choices=["tune", "test", "summary"], required=True)
    ap.add_argument("--methods", default=",".join(ORDER))
    ap.add_argument("--labeled", type=int, default=0, help="labels the students get (0: all)")
    ap.add_argument("--seeds", default="0,1,2,3,4", help="test seeds (MLP rows)")
    ap.add_argument("--cnn-seeds", type=int, default=3, help="how many of --seeds the CNN rows run")
    ap.add_argument("--tune-seeds", default="0,1")
    ap.add_argument("--kdistill", default=os.path.join(HERE, "..", "build", "kdistill"))
    ap.add_argument("--work", default=os.path.join(HERE, "..", "build", "methods"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "methods_cpu.json"))
    args = ap.parse_args()
    args.methods = args.methods.split(",")
    unknown = [m for m in args.methods if m not in GRID]
    if unknown:
        ap.error(f"unknown methods: {unknown}")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.tune_seeds = [int(s) for s in args.tune_seeds.split(",")]
    os.makedirs(args.work, exist_ok=True)
    results = json.load(open(args.out)) if os.path.exists(args.out) else {}
    results["protocol"] = __doc__
    results["machine"] = {"cpu": subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                                                capture_output=True, text=True).stdout.strip(),
                          "cores": os.cpu_count(), "threads": 2,
                          "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "active (kdistill's default)")}
    make_models(args.work, args.seeds)
    if args.phase == "tune":
        tune(args, results)
    elif args.phase == "test":
        judge(args, results)
    summary = summarise(results)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    table = markdown(summary)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    main()
