#!/usr/bin/env python3
"""Plots a kdistill report JSON (kdistill bench --json, kdistill demo --report): latency (p50)
against batch size for every model, and, when accuracies are present, accuracy against batch-1
latency. Usage: plot_report.py REPORT.json OUT.png"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

report = json.load(open(sys.argv[1]))
models = report["models"]
with_accuracy = [n for n, m in models.items() if "accuracy" in m and "1" in m["latency_ms"]]
fig, axes = plt.subplots(1, 2 if with_accuracy else 1, figsize=(11 if with_accuracy else 6, 4.2), squeeze=False)
ax = axes[0][0]
for name, m in models.items():
    lat = m["latency_ms"]
    if not lat:
        continue
    batches = sorted(lat, key=int)
    ax.plot([int(b) for b in batches], [lat[b]["p50"] for b in batches], marker="o", label=f"{name} ({m['arch']})")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("batch size")
ax.set_ylabel("latency p50 (ms)")
ax.set_title(f"latency on {report['device']}, {report['threads']} threads")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)
if with_accuracy:
    ax = axes[0][1]
    for name in with_accuracy:
        m = models[name]
        ax.scatter(m["latency_ms"]["1"]["p50"], 100 * m["accuracy"], s=60)
        ax.annotate(name, (m["latency_ms"]["1"]["p50"], 100 * m["accuracy"]), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency p50 (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy against latency")
    ax.grid(True, alpha=0.3)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
