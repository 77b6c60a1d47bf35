#!/usr/bin/env python3
"""The floor under a data-parallel step on this machine: PyTorch's own Gloo all-reduce between two
processes over 127.0.0.1, 1 thread each, for the given sizes in bytes (float32). Prints one JSON
object {bytes: milliseconds per all-reduce, median of 5 runs of 200}.
Usage: gloo_allreduce.py BYTES [BYTES ...]"""
import json
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, sizes, port, out):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    result = {}
    for size in sizes:
        t = torch.randn(size // 4)
        for _ in range(50):
            dist.all_reduce(t)
        runs = []
        for _ in range(5):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(200):
                dist.all_reduce(t)
            runs.append((time.perf_counter() - t0) / 200 * 1000)
        result[str(size)] = round(statistics.median(runs), 3)
    if rank == 0:
        out.put(result)
    dist.destroy_process_group()


if __name__ == "__main__":
    sizes = [int(s) for s in sys.argv[1:]]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(worker, args=(sizes, 29400 + os.getpid() % 500, queue), nprocs=2)
    print(json.dumps(queue.get()))
