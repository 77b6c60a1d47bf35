#!/usr/bin/env python3
"""PyTorch-Python latency of one of bench/make_models.py's models, measured like kdistill measures
(warm-up, then timed calls, p50/p99), for comparison in the same run: in eager mode (the
nn.Module, with the TorchScript file's weights loaded into it) and through the TorchScript file
called from Python. Prints {"eager": {...}, "torchscript": {...}}.
Usage: python_latency.py MODEL.pt BATCH THREADS"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_models import build_models  # noqa: E402


def measure(model, x):
    times = []
    with torch.no_grad():
        for _ in range(200):
            model(x)
        t_end = time.perf_counter() + 1.0
        while len(times) < max(1000 // x.shape[0], 20) or time.perf_counter() < t_end:
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    q = lambda p: 1000 * times[min(len(times) - 1, int(p * (len(times) - 1)))]  # noqa: E731
    return {"p50": q(0.5), "p99": q(0.99), "iters": len(times)}


path, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
scripted = torch.jit.load(path).eval()
eager = build_models()[os.path.basename(path)]
eager.load_state_dict(scripted.state_dict())
x = torch.randn(batch, 1, 28, 28)
assert torch.allclose(eager(x), scripted(x), atol=1e-5), "eager and TorchScript models differ"
result = {"batch": batch, "threads": threads}
for name, model in (("eager", eager), ("torchscript", scripted), ("eager_again", eager)):
    result[name] = measure(model, x)
# Eager is measured before and after the TorchScript model; the lower p50 of the two is kept, so
# a slow phase of a shared machine does not count against Python.
if result["eager_again"]["p50"] < result["eager"]["p50"]:
    result["eager"] = result["eager_again"]
del result["eager_again"]
print(json.dumps(result))
