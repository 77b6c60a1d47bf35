#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus into tests/fuzz/corpus/ (committed; rerun to regenerate).

Small valid inputs of each kind, so that libFuzzer starts from files that reach deep into the
readers: IDX labels and images, plain and gzip; run configurations with every key; HDF5 data
sets and teacher-logit caches (logits and probs, chunked and gzip-compressed like kdistill's own).
Needs python3-h5py and python3-numpy (Debian). Usage: /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import gzip
import os
import struct

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def out(kind, name):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


def idx_bytes(values):
    header = bytes([0, 0, 0x08, values.ndim]) + b"".join(struct.pack(">I", d) for d in values.shape)
    return header + values.astype(np.uint8).tobytes()


def write_idx():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    images = rng.integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    for name, data in [("labels.idx", idx_bytes(labels)), ("images.idx", idx_bytes(images))]:
        with open(out("idx", name), "wb") as f:
            f.write(data)
        with open(out("idx", name + ".gz"), "wb") as f:
            f.write(gzip.compress(data, mtime=0))


CONFIGS = {
    "full.yaml": """seed: 7
device: cpu
threads: 2
data: {format: hdf5, train: data/train.h5, test: /abs/test.h5, features: feats, labels: labs, labeled: 100}
teacher: {cache: logits.h5}
student: {torchscript: student.pt}
loss: {kind: kd, temperature: 2.5, alpha: 0.7}
train: {epochs: 3, batch_size: 64, optimizer: adamw, lr: 0.001, momentum: 0.5, nesterov: false,
        weight_decay: 1.0e-4, schedule: step, warmup_steps: 5, step_size: 10, gamma: 0.5, grad_clip_norm: 1.0,
        checkpoint_every: 50, log_every: 10, max_steps: 0, eval_batch_size: 256, on_nonfinite: skip}
output: runs/x
""",
    "minimal.yaml": "student: {torchscript: s.pt}\noutput: out\n",
    "idx.yaml": """data:
  format: idx
  path: /usr/share/datasets/fashion-mnist
teacher:
  torchscript: teacher.pt
student:
  torchscript: student.pt
train:
  optimizer: sgd
  nesterov: true
  schedule: cosine
output: runs/idx
""",
    "nested.yaml": """data:
  format: hdf5
  hdf5: {train: a.h5, test: b.h5, features: x, labels: y}
student: {torchscript: s.pt}
output: o
""",
    "json.json": '{"seed": 1, "student": {"torchscript": "s.pt"}, "output": "o", "train": {"lr": 0.5}}\n',
}


def write_configs():
    for name, text in CONFIGS.items():
        with open(out("config", name), "w") as f:
            f.write(text)


def write_hdf5():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    y = np.array([0, 1, 2, -1, 1, 0], dtype=np.int64)
    with h5py.File(out("hdf5", "data.h5"), "w") as f:
        f.create_dataset("x", data=x)
        f.create_dataset("y", data=y)
    with h5py.File(out("hdf5", "data_gzip_uint8.h5"), "w") as f:
        f.create_dataset("x", data=(rng.integers(0, 256, size=(6, 2, 2))).astype(np.uint8), chunks=(2, 2, 2),
                         compression="gzip")
        f.create_dataset("y", data=y.astype(np.int32), chunks=(3,), compression="gzip")
    logits = rng.normal(size=(6, 3)).astype(np.float32)
    with h5py.File(out("hdf5", "cache.h5"), "w") as f:
        f.create_dataset("logits", data=logits, chunks=(2, 3), compression="gzip", compression_opts=4)
        for key in ("teacher_sha256", "data_sha256"):
            f.attrs[key] = "0" * 64
        f.attrs["kdistill_version"] = "0.1.0"
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    with h5py.File(out("hdf5", "probs.h5"), "w") as f:
        f.create_dataset("probs", data=probs.astype(np.float64))
    write_topk_cache(logits)
    write_sampled_cache(logits)


def write_sampled_cache(logits):
    """4 draws per sample from the same logits, laid out as cache-teacher --format sampled writes it."""
    rng = np.random.default_rng(3)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    n, s = len(p), 4
    idx = np.full((n, s), -1, np.int32)
    w = np.zeros((n, s), np.float16)
    lp = np.zeros((n, s), np.float16)
    for r in range(n):
        classes, counts = np.unique(rng.choice(3, size=s, p=p[r]), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        m = len(classes)
        idx[r, :m] = classes[order]
        w[r, :m] = counts[order] / s
        lp[r, :m] = np.log(p[r, classes[order]])
    with h5py.File(out("hdf5", "sampled.h5"), "w") as f:
        for name, data in (("sampled_indices", idx), ("sampled_weights", w), ("sampled_logprobs", lp)):
            f.create_dataset(name, data=data, chunks=(2, s), compression="gzip", shuffle=True)
        f.create_dataset("top1_index", data=p.argmax(1).astype(np.int32), chunks=(2,), compression="gzip")
        for key in ("teacher_sha256", "data_sha256"):
            f.attrs[key] = "0" * 64
        f.attrs["kdistill_version"] = "0.1.0"
        f.attrs["format"] = "sampled"
        f.attrs["draws"] = np.int64(s)
        f.attrs["temperature"] = 1.0
        f.attrs["seed"] = np.int64(3)
        f.attrs["classes"] = np.int64(3)
        f.attrs["bytes_per_row"] = 30.0


def write_topk_cache(logits):
    """A top-2 cache of the same logits, laid out as kdistill cache-teacher --format topk writes it."""
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    order = np.argsort(-logp, axis=1)[:, :2]
    top = np.take_along_axis(logp, order, 1)
    tail = np.log(np.maximum(1 - np.exp(top).sum(1), 1e-30))
    with h5py.File(out("hdf5", "topk.h5"), "w") as f:
        f.create_dataset("topk_logprobs", data=top.astype(np.float16), chunks=(2, 2), compression="gzip")
        f.create_dataset("topk_indices", data=order.astype(np.int32), chunks=(2, 2), compression="gzip")
        f.create_dataset("tail_logprob", data=tail.astype(np.float32), chunks=(2,), compression="gzip")
        for key in ("teacher_sha256", "data_sha256"):
            f.attrs[key] = "0" * 64
        f.attrs["kdistill_version"] = "0.1.0"
        f.attrs["format"] = "topk"
        f.attrs["k"] = np.int64(2)
        f.attrs["classes"] = np.int64(3)
        f.attrs["bytes_per_row"] = 16.0


def write_runtime():
    """Models in the serving runtime's format (what kdistill::export_model writes)."""
    rng = np.random.default_rng(2)

    def model(name, input_shape, num_classes, layers):
        with h5py.File(out("runtime", name), "w") as f:
            f.attrs["format"] = np.bytes_("kdistill-runtime-1")
            f.attrs["kdistill_version"] = np.bytes_("0.1.0")
            f.attrs["arch"] = np.bytes_(name)
            f.attrs["input_shape"] = np.array(input_shape, dtype=np.int64)
            f.attrs["num_classes"] = np.int64(num_classes)
            f.attrs["mean"] = np.float64(0.5)
            f.attrs["std"] = np.float64(0.25)
            g = f.create_group("layers")
            for i, (kind, attrs, weights) in enumerate(layers):
                layer = g.create_group(str(i))
                layer.attrs["type"] = np.bytes_(kind)
                for k, v in attrs.items():
                    layer.attrs[k] = np.bytes_(v) if isinstance(v, str) else np.array(v, dtype=np.int64)
                for k, shape in weights.items():
                    layer[k] = rng.normal(size=shape).astype(np.float32)

    model("mlp.h5", [1, 4, 4], 3, [
        ("Flatten", {}, {}),
        ("Linear", {"in_features": 16, "out_features": 5}, {"weight": (5, 16), "bias": (5,)}),
        ("Tanh", {}, {}),
        ("Linear", {"in_features": 5, "out_features": 3}, {"weight": (3, 5), "bias": (3,)}),
    ])
    model("cnn.h5", [1, 4, 4], 3, [
        ("Conv2d", {"in_channels": 1, "out_channels": 2, "kernel_size": [3, 3], "stride": [1, 1],
                    "padding": [1, 1]}, {"weight": (2, 1, 3, 3), "bias": (2,)}),
        ("ReLU", {}, {}),
        ("MaxPool2d", {"kernel_size": [2, 2], "stride": [2, 2]}, {}),
        ("AvgPool2d", {"kernel_size": 1, "stride": 1}, {}),
        ("Flatten", {}, {}),
        ("GELU", {"approximate": "tanh"}, {}),
        ("Linear", {"in_features": 8, "out_features": 3}, {"weight": (3, 8)}),
        ("Sigmoid", {}, {}),
    ])

    # Format 2: a graph whose nodes name their inputs (value 0 is the input, k + 1 node k's output).
    with h5py.File(out("runtime", "graph.h5"), "w") as f:
        f.attrs["format"] = np.bytes_("kdistill-runtime-2")
        f.attrs["kdistill_version"] = np.bytes_("0.2.0")
        f.attrs["arch"] = np.bytes_("graph")
        f.attrs["input_shape"] = np.array([2, 4, 4], dtype=np.int64)
        f.attrs["num_classes"] = np.int64(3)
        f.attrs["mean"] = np.float64(0.5)
        f.attrs["std"] = np.float64(0.25)
        g = f.create_group("nodes")
        nodes = [
            ("Conv2d", [0], {"in_channels": 2, "out_channels": 4, "groups": 2, "kernel_size": [3, 3],
                             "stride": [1, 1], "padding": [2, 2], "dilation": [2, 2]},
             {"weight": (4, 1, 3, 3), "bias": (4,)}),                                   # 1: [4, 4, 4]
            ("Affine", [1], {}, {"weight": (4,), "bias": (4,)}),                        # 2
            ("Hardtanh", [2], {"min_val": -1.0, "max_val": 1.0}, {}),                   # 3
            ("GlobalAvgPool2d", [3], {}, {}),                                           # 4: [4, 1, 1]
            ("Hardsigmoid", [4], {}, {}),                                               # 5
            ("Mul", [3, 5], {}, {}),                                                    # 6
            ("Add", [6, 1], {}, {}),                                                    # 7
            ("Concat", [7, 0], {}, {}),                                                 # 8: [6, 4, 4]
            ("AvgPool2d", [8], {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1],
                                "count_include_pad": 0}, {}),                           # 9: [6, 2, 2]
            ("Reshape", [9], {"shape": [6, 4]}, {}),                                    # 10
            ("SiLU", [10], {}, {}),                                                     # 11
            ("Flatten", [11], {}, {}),                                                  # 12: [24]
            ("Linear", [12], {"in_features": 24, "out_features": 3}, {"weight": (3, 24), "bias": (3,)}),
        ]
        for i, (kind, inputs, attrs, weights) in enumerate(nodes):
            node = g.create_group(str(i))
            node.attrs["type"] = np.bytes_(kind)
            node.attrs["inputs"] = np.array(inputs, dtype=np.int64)
            for k, v in attrs.items():
                node.attrs[k] = np.float64(v) if isinstance(v, float) else np.array(v, dtype=np.int64)
            for k, shape in weights.items():
                node[k] = rng.normal(size=shape).astype(np.float32)


if __name__ == "__main__":
    write_idx()
    write_configs()
    write_hdf5()
    write_runtime()
