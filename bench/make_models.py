#!/usr/bin/env python3
"""TorchScript models for the latency benchmarks: the demo's teacher (784-1200-1200-10 MLP,
dropout 0.2), the MLP-64 student and the cnn:8,16 student, with random weights (latency does
not depend on the values). Usage: make_models.py OUT_DIR
(bench/python_latency.py imports build_models() for the eager modules)."""
import os
import sys

import torch
import torch.nn as nn



def build_models():
    """The eager modules, in eval mode, with the weights every run gets (seed 0)."""
    torch.manual_seed(0)
    models = {
        "teacher_mlp.pt": nn.Sequential(nn.Flatten(), nn.Linear(784, 1200), nn.ReLU(), nn.Dropout(0.2),
                                        nn.Linear(1200, 1200), nn.ReLU(), nn.Dropout(0.2), nn.Linear(1200, 10)),
        "student_mlp64.pt": nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10)),
        "student_cnn.pt": nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 7 * 7, 10)),
    }
    return {name: m.eval() for name, m in models.items()}


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, m in build_models().items():
        torch.jit.script(m).save(os.path.join(out, name))
