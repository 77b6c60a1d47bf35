"""Errors cross into Python with kdistill's messages: kdistill.Error (a RuntimeError) for bad input,
TypeError for arguments of the wrong Python type; never a crash."""
import pytest

kdistill = pytest.importorskip("kdistill", reason="kdistill is not importable: build it and set PYTHONPATH=build/python")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402


def test_error_is_a_runtime_error():
    assert issubclass(kdistill.Error, RuntimeError)
    assert kdistill.Error.__module__ == "kdistill"


def test_bad_temperature_raises_kdistill_error_with_the_librarys_message():
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(kdistill.Error) as e:
        kdistill.kd_loss(s, t, y, temperature=-1)
    assert isinstance(e.value, RuntimeError)
    assert "temperature must be > 0, got -1" in str(e.value)
    assert str(e.value).startswith("kd_loss: ")
    with pytest.raises(RuntimeError, match="alpha must be in"):  # caught as a plain RuntimeError too
        kdistill.kd_loss(s, t, y, alpha=1.5)


def test_bad_shapes_and_targets_name_the_argument():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(kdistill.Error, match="student_logits and teacher_logits must have the same shape"):
        kdistill.kd_loss(s, torch.randn(4, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(kdistill.Error, match=r"targets\[1\] = 7 is outside"):
        kdistill.kd_loss(s, t, torch.tensor([0, 7, 1, 2]))
    with pytest.raises(kdistill.Error, match="NaN or infinite"):
        kdistill.kd_loss(torch.full((4, 3), float("nan")), t, torch.zeros(4, dtype=torch.long))


def test_a_config_with_a_wrong_type_names_the_key(tmp_path):
    config = {"student": {"torchscript": "student.pt"}, "train": {"lr": "fast"}, "output": str(tmp_path / "out")}
    with pytest.raises(kdistill.Error) as e:
        kdistill.train(config)
    assert "train.lr: expected a number" in str(e.value)
    assert str(e.value).startswith("<dict>: ")


def test_a_config_with_an_unknown_key(tmp_path):
    with pytest.raises(kdistill.Error, match="trian: unknown key"):
        kdistill.train({"trian": {}, "student": {"torchscript": "s.pt"}, "output": str(tmp_path)})


def test_a_missing_config_file(tmp_path):
    with pytest.raises(kdistill.Error, match="missing.yaml"):
        kdistill.train(str(tmp_path / "missing.yaml"))


def test_arguments_of_the_wrong_python_type():
    with pytest.raises(TypeError, match="expected a dict or the path of a YAML file"):
        kdistill.train(42)
    plain = nn.Linear(16, 4)  # not scripted
    with pytest.raises(TypeError, match="torch.jit.script"):
        kdistill.bench(plain, plain, input_shape=[16])
    with pytest.raises(TypeError):
        kdistill.kd_loss("not a tensor", torch.randn(2, 2), torch.zeros(2, dtype=torch.long))


def test_missing_model_files_and_data(tmp_path):
    with pytest.raises(kdistill.Error, match="does not exist"):
        kdistill.bench(str(tmp_path / "t.pt"), str(tmp_path / "s.pt"), input_shape=[16])
    with pytest.raises(kdistill.Error, match="expected idx:DIR, hdf5:FILE"):
        kdistill.load_data("csv:whatever.csv")
    with pytest.raises(kdistill.Error, match="nothing.h5"):
        kdistill.load_data(f"hdf5:{tmp_path / 'nothing.h5'}")


def test_a_model_that_fails_inside_libtorch_raises_instead_of_crashing():
    student = torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)))
    with pytest.raises(RuntimeError):
        kdistill.bench(student, student, input_shape=[3, 3], batch_sizes=[1], min_seconds=0.01, iters=1)
