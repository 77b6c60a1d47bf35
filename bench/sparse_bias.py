#!/usr/bin/env python3
"""How far top-k targets with a tail bucket are from dense KD: the loss and its gradient.

For a teacher and a student that disagrees with it a little, this compares
kdistill.sparse_divergence_loss (top k classes + one tail bucket, sparse.h) with the dense
kdistill.kd_soft_loss, both T^2 * KL at temperature T, for several k:
  loss error      |L_k - L_dense| / L_dense
  gradient error  ||dL_k/ds - dL_dense/ds|| / ||dL_dense/ds||   (over the batch's student logits)
  bytes per row   what a topk cache stores per sample before compression: 2k (float16) + 4k (int32) + 4

Two teachers: 10 classes with logits 3 * N(0, 1) (an image classifier's spread), and a 32,000-token
vocabulary with Zipf-like logits -1.1 * log(rank) + N(0, 1) (a language model's long tail). The
student's logits are the teacher's plus N(0, 1) noise.

Usage: /usr/bin/python3 bench/sparse_bias.py [--out bench/results/sparse_bias_cpu]   (PYTHONPATH=build/python)
"""
import argparse
import json
import math
import os
import platform

import torch
import kdistill


def teacher_logits(kind, rows, gen):
    if kind == "classes10":
        return 3 * torch.randn(rows, 10, generator=gen, dtype=torch.float64)
    v = 32000
    rank = torch.arange(1, v + 1, dtype=torch.float64)
    base = -1.1 * rank.log()
    perm = torch.stack([torch.randperm(v, generator=gen) for _ in range(rows)])
    return base[perm] + torch.randn(rows, v, generator=gen, dtype=torch.float64)


def measure(kind, ks, temperatures, rows=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = teacher_logits(kind, rows, gen)
    s0 = t + torch.randn(t.shape, generator=gen, dtype=torch.float64)
    out = []
    for temperature in temperatures:
        s = s0.clone().requires_grad_()
        dense = kdistill.kd_soft_loss(s, t, temperature=temperature)
        (g_dense,) = torch.autograd.grad(dense, s)
        for k in ks:
            idx, lp, tail = kdistill.topk_targets(t, k)
            s = s0.clone().requires_grad_()
            sparse = kdistill.sparse_divergence_loss(s, idx, lp.half(), tail.float(), temperature=temperature)
            (g,) = torch.autograd.grad(sparse, s)
            out.append({
                "teacher": kind, "classes": t.shape[1], "k": k, "temperature": temperature,
                "teacher_tail_mass": float(tail.exp().mean()),
                "loss_dense": float(dense), "loss_topk": float(sparse),
                "loss_rel_error": abs(float(sparse) - float(dense)) / float(dense),
                "grad_rel_error": float((g - g_dense).norm() / g_dense.norm()),
                "bytes_per_row": 6 * k + 4, "dense_bytes_per_row": 4 * t.shape[1],
            })
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="bench/results/sparse_bias_cpu")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = measure("classes10", [1, 2, 3, 4, 6, 10], [1.0, 4.0]) + \
        measure("vocab32000", [1, 16, 64, 256, 1024], [1.0, 2.0])
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    meta = {"script": "bench/sparse_bias.py", "torch": torch.__version__, "kdistill": kdistill.__version__,
            "machine": platform.processor() or platform.machine(), "rows_per_batch": 64,
            "note": "log-probabilities rounded to float16 as a topk cache stores them"}
    with open(args.out + ".json", "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=1)
    lines = ["| teacher | k | T | tail mass | loss error | gradient error | bytes/row (dense) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['teacher']} | {r['k']} | {r['temperature']:g} | {r['teacher_tail_mass']:.3g} | "
                     f"{100 * r['loss_rel_error']:.2f}% | {100 * r['grad_rel_error']:.2f}% | "
                     f"{r['bytes_per_row']} ({r['dense_bytes_per_row']}) |")
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
