"""kdistill.bench on tiny TorchScript models: the report dict, paths as well as modules, and the
caller's modules left as they were."""
import pathlib

import pytest

kdistill = pytest.importorskip("kdistill", reason="kdistill is not importable: build it and set PYTHONPATH=build/python")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

QUICK = dict(input_shape=[1, 4, 4], batch_sizes=[1, 4], min_seconds=0.01, iters=20, warmup_seconds=0.01)


def tiny_models():
    torch.manual_seed(0)
    teacher = torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)))
    student = torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)))
    return teacher, student


def params(module):
    return sum(p.numel() for p in module.parameters())


def test_bench_report_of_script_modules():
    teacher, student = tiny_models()
    r = kdistill.bench(teacher, student, **QUICK)
    assert r["kdistill_version"] == kdistill.__version__
    assert r["device"] == "cpu"
    assert set(r["models"]) == {"teacher", "student"}
    assert r["models"]["teacher"]["params"] == params(teacher) == 16 * 32 + 32 + 32 * 4 + 4
    assert r["models"]["student"]["params"] == params(student) == 16 * 4 + 4
    for name in ("teacher", "student"):
        m = r["models"][name]
        assert m["size_bytes"] > 0
        assert set(m["latency_ms"]) == {"1", "4"}
        for b in ("1", "4"):
            lat = m["latency_ms"][b]
            assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
            assert lat["iters"] >= 20
        assert "accuracy" not in m  # no data given


def test_bench_takes_paths(tmp_path):
    teacher, student = tiny_models()
    teacher.save(str(tmp_path / "teacher.pt"))
    student.save(str(tmp_path / "student.pt"))
    r = kdistill.bench(str(tmp_path / "teacher.pt"), pathlib.Path(tmp_path / "student.pt"), **QUICK)
    assert r["models"]["teacher"]["params"] == params(teacher)
    assert r["models"]["student"]["latency_ms"]["1"]["p50"] > 0


def test_bench_leaves_the_callers_modules_alone():
    teacher, student = tiny_models()
    teacher.train()
    before = [p.detach().clone() for p in teacher.parameters()]
    kdistill.bench(teacher, student, **QUICK)
    assert teacher.training
    assert all(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))


def test_bench_with_data_and_the_eigen_runtime(tabular):
    torch.manual_seed(0)
    student = torch.jit.script(nn.Sequential(nn.Linear(8, 3)))
    r = kdistill.bench(str(tabular["teacher"]), student, input_shape=[8], batch_sizes=[1], min_seconds=0.01,
                       iters=20, warmup_seconds=0.01, eigen=True, data=f"hdf5:{tabular['test']}")
    assert set(r["models"]) == {"teacher", "student", "student_eigen"}
    assert r["dataset"]["test"] == 100
    teacher = torch.jit.load(str(tabular["teacher"]))
    with torch.no_grad():
        want = (teacher(tabular["x_test"]).argmax(1) == tabular["y_test"]).double().mean().item()
    assert r["models"]["teacher"]["accuracy"] == pytest.approx(want, abs=0.011)
    assert 0 <= r["models"]["student"]["agreement"] <= 1
    assert r["models"]["student_eigen"]["latency_ms"]["1"]["p50"] > 0
