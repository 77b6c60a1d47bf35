"""Shared fixtures for the kdistill Python tests: a small 3-class tabular problem in HDF5 (written
with h5py), a teacher trained here in PyTorch, and an untrained student, both as TorchScript files.

Each test file skips visibly when the module cannot be imported (not built, or build/python not on
PYTHONPATH). Under ctest KDISTILL_REQUIRE_MODULE=1 is set: the module was built there, so an import
failure is an error, not a skip."""
import os
import pathlib
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from make_fixtures import write_tabular  # noqa: E402  (one definition of the problem for C++ and Python tests)


def pytest_configure(config):
    if os.environ.get("KDISTILL_REQUIRE_MODULE") == "1":
        try:
            import kdistill  # noqa: F401
        except ImportError as e:
            raise pytest.UsageError(f"KDISTILL_REQUIRE_MODULE=1 but `import kdistill` failed: {e}")


@pytest.fixture(scope="session")
def tabular(tmp_path_factory):
    """Paths and tensors of the tabular problem: train.h5 (200 samples), test.h5 (100),
    teacher.pt (trained), student.pt (untrained)."""
    pytest.importorskip("h5py", reason="h5py is needed to write the test data (python3-h5py)")
    d = tmp_path_factory.mktemp("tabular")
    t = write_tabular(str(d), 200, 100)
    del t["teacher_module"]
    return {"dir": d, **{k: (pathlib.Path(v) if isinstance(v, str) else v) for k, v in t.items()}}


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

