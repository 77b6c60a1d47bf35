"""examples/python/demo.py on a tiny MNIST-like IDX directory written here, and its error path."""
import gzip
import os
import re
import subprocess
import sys

import pytest

kdistill = pytest.importorskip("kdistill", reason="kdistill is not importable: build it and set PYTHONPATH=build/python")
import numpy as np  # noqa: E402

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "demo.py")


def write_idx(path, array):
    """An IDX file, gzip-compressed: magic (0, 0, 8 = uint8, ndim), big-endian dims, then the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def tiny_mnist(directory, train=300, test=100):
    """Noise images with a bright 6x6 block whose position is the label."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(labels):
            r, k = 2 + 12 * (c // 5), 1 + 5 * (c % 5)
            images[i, r:r + 6, k:k + 6] = 255
        write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte.gz"), images)
        write_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte.gz"), labels)


def run_demo(*args):
    return subprocess.run([sys.executable, DEMO, *args], capture_output=True, text=True, timeout=300)


def test_demo_runs_on_tiny_data(tmp_path):
    tiny_mnist(tmp_path)
    p = run_demo("--data", str(tmp_path), "--teacher-hidden", "32", "--student-hidden", "8", "--epochs-teacher", "3",
                 "--epochs-student", "3", "--labels", "50", "--bench-seconds", "0.01", "--threads", "1",
                 "--out", str(tmp_path / "runs"))
    assert p.returncode == 0, p.stderr
    # The student checked in PyTorch with the demo's own IDX reader and normalisation gives the
    # accuracy kdistill measured with its loader.
    ours = float(re.search(r"student accuracy \(kdistill\):\s+([0-9.]+)", p.stdout).group(1))
    torch_side = float(re.search(r"student accuracy \(PyTorch\):\s+([0-9.]+)", p.stdout).group(1))
    assert torch_side == pytest.approx(ours, abs=0.011)
    assert "speed-up" in p.stdout
    assert os.path.isfile(tmp_path / "runs" / "student" / "student.pt")


def test_demo_reports_a_missing_data_directory(tmp_path):
    p = run_demo("--data", str(tmp_path / "does-not-exist"))
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("error: load_mnist_family: data set files missing in")
