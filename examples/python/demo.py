#!/usr/bin/env python3
"""kdistill from Python: train a teacher, distil it into a small student, check the student in
plain PyTorch, then measure both.

Models are defined in PyTorch and exported with torch.jit.script; kdistill trains them (from
labels for the teacher, by distillation for the student) on an MNIST-family IDX directory,
Fashion-MNIST by default. Run with Debian's interpreter and the built module on the path:

    PYTHONPATH=build/python /usr/bin/python3 examples/python/demo.py --help
"""
import argparse
import gzip
import os
import sys
import tempfile

# libgomp reads OMP_WAIT_POLICY once, when torch loads it; its default (spinning) made 2-thread
# training 2-3x slower on small machines (the kdistill command sets the same).
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import kdistill  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
TEACHER_HIDDEN = "1200,1200"  # the teacher's hidden layers (Hinton et al.'s MNIST teacher)
STUDENT_HIDDEN = "64"         # the student's
DROPOUT = 0.2                 # teacher only
EPOCHS_TEACHER = 5
EPOCHS_STUDENT = 10
BATCH_SIZE = 128
LR = 0.05
TEMPERATURE = 4.0
ALPHA = 0.9
SEED = 0


def mlp(hidden, dropout=0.0):
    """784 -> hidden... -> 10 on [B, 1, 28, 28] images."""
    layers, width = [nn.Flatten()], 28 * 28
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
        width = h
    return nn.Sequential(*layers, nn.Linear(width, 10))


def read_idx(data_dir, name):
    """An IDX file (gzip or not) as a numpy array: images [N, H, W] or labels [N], uint8."""
    path = os.path.join(data_dir, name)
    gz = os.path.exists(path + ".gz")
    with (gzip.open(path + ".gz") if gz else open(path, "rb")) as f:
        raw = f.read()
    dims = np.frombuffer(raw, dtype=">u4", count=raw[3], offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * raw[3]).reshape(dims)


def test_accuracy(model_path, data_dir):
    """Test accuracy of a TorchScript model computed here, in PyTorch, independently of kdistill's
    data loader: pixels in [0, 1], normalised by the training set's mean and standard deviation."""
    counts = np.bincount(read_idx(data_dir, "train-images-idx3-ubyte").ravel(), minlength=256)
    levels = np.arange(256) / 255.0  # the training set's pixel histogram gives mean and std exactly
    mean = (counts * levels).sum() / counts.sum()
    std = np.sqrt((counts * (levels - mean) ** 2).sum() / (counts.sum() - 1))
    images = read_idx(data_dir, "t10k-images-idx3-ubyte").astype(np.float32) / 255.0
    x = torch.from_numpy(((images - mean) / std).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(read_idx(data_dir, "t10k-labels-idx1-ubyte").astype(np.int64))
    model = torch.jit.load(model_path).eval()
    with torch.no_grad():
        pred = torch.cat([model(b).argmax(1) for b in x.split(1000)])
    return (pred == y).double().mean().item()


def layers(spec):
    return [int(h) for h in spec.split(",")]


def run(args, out):
    torch.manual_seed(args.seed)
    for name, model in (("teacher_init.pt", mlp(layers(args.teacher_hidden), DROPOUT)),
                        ("student_init.pt", mlp(layers(args.student_hidden)))):
        torch.jit.script(model).save(os.path.join(out, name))

    common = {"seed": args.seed, "threads": args.threads,
              "data": {"format": "idx", "path": args.data},
              "train": {"batch_size": BATCH_SIZE, "lr": LR, "schedule": "cosine", "max_steps": args.max_steps}}
    # 1. The teacher, from every label (no teacher key: a run from labels alone).
    teacher = kdistill.train({**common, "student": {"torchscript": os.path.join(out, "teacher_init.pt")},
                              "train": {**common["train"], "epochs": args.epochs_teacher},
                              "output": os.path.join(out, "teacher")})
    teacher_pt = os.path.join(teacher["output_dir"], "student.pt")
    # 2. The student, distilled from the trained teacher; with --labels N it sees N labels, the
    #    teacher's soft targets cover every training image.
    student = kdistill.train({**common, "data": {**common["data"], "labeled": args.labels},
                              "teacher": {"torchscript": teacher_pt},
                              "student": {"torchscript": os.path.join(out, "student_init.pt")},
                              "loss": {"kind": "kd", "temperature": args.temperature, "alpha": args.alpha},
                              "train": {**common["train"], "epochs": args.epochs_student},
                              "output": os.path.join(out, "student")})
    student_pt = os.path.join(student["output_dir"], "student.pt")

    # 3. The distilled student is a plain TorchScript file: check it in PyTorch alone.
    kd = student["models"]["student_kd"]
    print(f"teacher accuracy (kdistill):  {teacher['models']['student_scratch']['accuracy']:.4f}")
    print(f"student accuracy (kdistill):  {kd['accuracy']:.4f}  agreement with the teacher {kd['agreement']:.4f}")
    print(f"student accuracy (PyTorch):   {test_accuracy(student_pt, args.data):.4f}")

    # 4. Latency side by side.
    report = kdistill.bench(teacher_pt, student_pt, input_shape=[1, 28, 28], batch_sizes=[1, 256],
                            threads=args.threads, min_seconds=args.bench_seconds,
                            warmup_seconds=min(0.2, args.bench_seconds))
    p50 = {name: {b: m["latency_ms"][b]["p50"] for b in ("1", "256")} for name, m in report["models"].items()}
    for name, m in report["models"].items():
        print(f"{name:8s} {m['params']:>10,d} params   p50 {p50[name]['1']:.4f} ms at batch 1, "
              f"{p50[name]['256']:.3f} ms at batch 256")
    print(f"student speed-up at p50: {p50['teacher']['1'] / p50['student']['1']:.1f}x at batch 1, "
          f"{p50['teacher']['256'] / p50['student']['256']:.1f}x at batch 256")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DATA_DIR, help="MNIST-family IDX directory (default: %(default)s)")
    p.add_argument("--out", help="keep the runs in this directory (default: a temporary one, removed at the end)")
    p.add_argument("--teacher-hidden", default=TEACHER_HIDDEN, help="teacher's hidden layers (default: %(default)s)")
    p.add_argument("--student-hidden", default=STUDENT_HIDDEN, help="student's hidden layers (default: %(default)s)")
    p.add_argument("--epochs-teacher", type=int, default=EPOCHS_TEACHER)
    p.add_argument("--epochs-student", type=int, default=EPOCHS_STUDENT)
    p.add_argument("--max-steps", type=int, default=0, help="stop each run after this many steps (0: no limit)")
    p.add_argument("--labels", type=int, default=0, help="labels the student sees (0: all)")
    p.add_argument("--temperature", type=float, default=TEMPERATURE)
    p.add_argument("--alpha", type=float, default=ALPHA)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default: %(default)s)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--bench-seconds", type=float, default=1.0, help="timing per model and batch size")
    args = p.parse_args()
    try:
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            run(args, args.out)
        else:
            with tempfile.TemporaryDirectory(prefix="kdistill-demo-") as out:
                run(args, out)
    except kdistill.Error as e:  # bad input: kdistill's message names the file, key or value
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
