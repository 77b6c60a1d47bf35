#!/usr/bin/env python3
"""PyTorch-Python eager latency of a TorchScript file's architecture, measured like kdistill
measures (warm-up, then timed calls, p50/p99), for comparison in the same run.
Usage: python_latency.py MODEL.pt BATCH THREADS"""
import json
import sys
import time

import torch

model = torch.jit.load(sys.argv[1]).eval()
batch, threads = int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
x = torch.randn(batch, 1, 28, 28)
times = []
with torch.no_grad():
    for _ in range(200):
        model(x)
    t_end = time.perf_counter() + 1.0
    while len(times) < max(1000 // batch, 20) or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
times.sort()
q = lambda p: 1000 * times[min(len(times) - 1, int(p * (len(times) - 1)))]
print(json.dumps({"batch": batch, "threads": threads, "p50": q(0.5), "p99": q(0.99), "iters": len(times)}))
