"""Shared fixtures for the kdistill Python tests: a small 3-class tabular problem in HDF5 (written
with h5py), a teacher trained here in PyTorch, and an untrained student, both as TorchScript files.

Each test file skips visibly when the module cannot be imported (not built, or build/python not on
PYTHONPATH). Under ctest KDISTILL_REQUIRE_MODULE=1 is set: the module was built there, so an import
failure is an error, not a skip."""
import os

import pytest

NUM_FEATURES = 8
NUM_CLASSES = 3


def pytest_configure(config):
    if os.environ.get("KDISTILL_REQUIRE_MODULE") == "1":
        try:
            import kdistill  # noqa: F401
        except ImportError as e:
            raise pytest.UsageError(f"KDISTILL_REQUIRE_MODULE=1 but `import kdistill` failed: {e}")


def linear_rule_data(n, seed):
    """Features [n, 8] and labels [n] from a fixed linear rule (argmax of x @ w)."""
    import torch

    w = torch.randn(NUM_FEATURES, NUM_CLASSES, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(n, NUM_FEATURES, generator=torch.Generator().manual_seed(seed))
    return x, (x @ w).argmax(1)


@pytest.fixture(scope="session")
def tabular(tmp_path_factory):
    """Paths and tensors of the tabular problem: train.h5 (200 samples), test.h5 (100),
    teacher.pt (trained), student.pt (untrained)."""
    h5py = pytest.importorskip("h5py", reason="h5py is needed to write the test data (python3-h5py)")
    import torch
    import torch.nn as nn

    d = tmp_path_factory.mktemp("tabular")
    x_train, y_train = linear_rule_data(200, seed=1)
    x_test, y_test = linear_rule_data(100, seed=2)
    for name, x, y in (("train.h5", x_train, y_train), ("test.h5", x_test, y_test)):
        with h5py.File(d / name, "w") as f:
            f["x"] = x.numpy()
            f["y"] = y.numpy().astype("int64")

    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(NUM_FEATURES, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES))
    opt = torch.optim.Adam(teacher.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(teacher(x_train), y_train).backward()
        opt.step()
    teacher.eval()
    torch.jit.script(teacher).save(str(d / "teacher.pt"))
    student = nn.Sequential(nn.Linear(NUM_FEATURES, 16), nn.ReLU(), nn.Linear(16, NUM_CLASSES))
    torch.jit.script(student).save(str(d / "student.pt"))
    return {"dir": d, "train": d / "train.h5", "test": d / "test.h5", "teacher": d / "teacher.pt",
            "student": d / "student.pt", "x_train": x_train, "y_train": y_train, "x_test": x_test,
            "y_test": y_test}


@pytest.fixture
def run_config(tabular, tmp_path):
    """A distillation run over the tabular problem as a dict; tests change what they need."""
    return {
        "seed": 0,
        "threads": 1,
        "data": {"format": "hdf5", "train": str(tabular["train"]), "test": str(tabular["test"])},
        "teacher": {"torchscript": str(tabular["teacher"])},
        "student": {"torchscript": str(tabular["student"])},
        "loss": {"kind": "kd", "temperature": 2.0, "alpha": 0.7},
        "train": {"epochs": 30, "batch_size": 20, "lr": 0.1, "momentum": 0.9, "schedule": "cosine"},
        "output": str(tmp_path / "out"),
    }

