#!/usr/bin/env python3
"""The same training loops as bench/train_bench.cpp, in plain PyTorch-Python, for comparison.

MLP 784-64-10 from labels, the same student distilled from a live 784-1200-1200-10 teacher
(dropout 0.2, eval mode, no grad), and the teacher itself; batch 128, SGD (lr 0.01, momentum
0.9), Fashion-MNIST-shaped random data, shuffled batches gathered with one index per batch.
Also: batch-1 inference latency of the MLP-64 in eager mode. Prints one JSON object.

--precision bf16 does what kdistill's bf16 does, as a PyTorch user would write it: the frozen KD
teacher is converted to bfloat16 (`.to(torch.bfloat16)`, inputs cast, logits back to float32),
and trained models run their forward under `torch.autocast("cpu", dtype=torch.bfloat16)`.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(hidden, dropout=0.0):
    layers, width = [nn.Flatten()], 784
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 10))


def kd_loss(s, t, y, temperature=4.0, alpha=0.9):
    soft = F.kl_div(F.log_softmax(s / temperature, 1), F.log_softmax(t / temperature, 1),
                    reduction="batchmean", log_target=True) * temperature * temperature
    return alpha * soft + (1 - alpha) * F.cross_entropy(s, y)


def train_rate(kind, steps, x, y, bf16=False):
    torch.manual_seed(1)
    teacher = mlp([1200, 1200], 0.2)
    student = teacher if kind == "teacher" else mlp([64])
    frozen = None
    if kind == "kd":
        frozen = mlp([1200, 1200], 0.2).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        if bf16:
            frozen = frozen.to(torch.bfloat16)
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    student.train()
    order = torch.randperm(x.shape[0])
    batch = 128

    def step(i):
        idx = order[(i * batch) % (x.shape[0] - batch):][:batch]
        xb, yb = x[idx], y[idx]
        if bf16 and kind != "kd":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = student(xb)
            out = out.float()
        else:
            out = student(xb)
        if frozen is not None:
            with torch.no_grad():
                t = frozen(xb.bfloat16()).float() if bf16 else frozen(xb)
            loss = kd_loss(out, t, yb)
        else:
            loss = F.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for i in range(20):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * batch / (time.perf_counter() - start)


def batch1_latency_us(iters):
    torch.manual_seed(1)
    model = mlp([64]).eval()
    x = torch.randn(1, 1, 28, 28)
    times = []
    with torch.no_grad():
        for _ in range(200):
            model(x)
        for _ in range(iters):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    return {"p50": 1e6 * times[len(times) // 2], "p99": 1e6 * times[int(len(times) * 0.99)]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    args = ap.parse_args()
    bf16 = args.precision == "bf16"
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(60000, 1, 28, 28)
    y = torch.randint(0, 10, (60000,))
    result = {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "train_samples_per_s": {
            "student_scratch": train_rate("scratch", args.steps * 4, x, y, bf16),
            "student_kd": train_rate("kd", args.steps, x, y, bf16),
            "teacher": train_rate("teacher", args.steps // 2, x, y, bf16),
        },
        "mlp64_batch1_us": batch1_latency_us(5000),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
