"""Configured runs from Python: a dict or a YAML file, a live or cached teacher; the trained
student is checked in PyTorch alone."""
import hashlib
import json
import os
import pathlib

import pytest

kdistill = pytest.importorskip("kdistill", reason="kdistill is not importable: build it and set PYTHONPATH=build/python")
import torch  # noqa: E402


def accuracy(path, x, y):
    """Top-1 accuracy of a TorchScript file, computed in PyTorch."""
    model = torch.jit.load(str(path)).eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).double().mean().item()


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def test_train_from_a_dict(tabular, run_config):
    student_before = sha256(tabular["student"])
    r = kdistill.train(run_config)
    assert os.path.samefile(r["output_dir"], run_config["output"])
    assert r["kdistill_version"] == kdistill.__version__
    assert r["dataset"] == {"name": str(tabular["train"]), "train": 200, "test": 100, "labeled": 200}
    assert r["kd"] == {"temperature": 2.0, "alpha": 0.7}
    assert set(r["models"]) == {"teacher", "student_kd"}
    kd = r["models"]["student_kd"]
    assert kd["params"] == 8 * 16 + 16 + 16 * 3 + 3
    assert 0 <= kd["agreement"] <= 1 and kd["train_samples_per_s"] > 0
    for name in ("student.pt", "report.json", "manifest.json", "metrics.jsonl", "config.yaml"):
        assert os.path.isfile(os.path.join(r["output_dir"], name)), name
    # The student is a plain TorchScript file; PyTorch alone gives the accuracy kdistill reported.
    got = accuracy(os.path.join(r["output_dir"], "student.pt"), tabular["x_test"], tabular["y_test"])
    assert got > 0.8
    assert kd["accuracy"] == pytest.approx(got, abs=0.011)
    assert sha256(tabular["student"]) == student_before  # the untrained student's file is left as it was


def test_train_from_a_yaml_file_with_relative_paths(tabular, tmp_path):
    for name in ("train.h5", "test.h5", "student.pt"):
        os.symlink(tabular[name.split(".")[0]], tmp_path / name)
    (tmp_path / "run.yaml").write_text(
        "seed: 0\nthreads: 1\n"
        "data: {format: hdf5, train: train.h5, test: test.h5}\n"
        "student: {torchscript: student.pt}\n"
        "train: {epochs: 30, batch_size: 20, lr: 0.1, schedule: cosine}\n"
        "output: runs/scratch\n")
    r = kdistill.train(tmp_path / "run.yaml")  # a str or any os.PathLike
    assert os.path.samefile(r["output_dir"], tmp_path / "runs" / "scratch")  # relative to the file
    assert set(r["models"]) == {"student_scratch"}  # no teacher: from labels alone
    assert "kd" not in r
    got = accuracy(tmp_path / "runs" / "scratch" / "student.pt", tabular["x_test"], tabular["y_test"])
    assert got > 0.8
    assert r["models"]["student_scratch"]["accuracy"] == pytest.approx(got, abs=0.011)


def test_train_takes_path_objects_in_dicts_and_refuses_a_used_output(run_config, tmp_path):
    run_config["train"]["epochs"] = 1
    run_config["output"] = tmp_path / "pathlib-out"  # os.PathLike values become strings
    r = kdistill.train(run_config)
    assert os.path.samefile(r["output_dir"], tmp_path / "pathlib-out")
    with pytest.raises(kdistill.Error, match="already holds a run"):
        kdistill.train(run_config)


def test_resume_of_a_finished_run_gives_the_same_report(run_config):
    run_config["train"]["epochs"] = 3
    first = kdistill.train(run_config)
    again = kdistill.resume(first["output_dir"])
    assert again["models"]["student_kd"]["accuracy"] == first["models"]["student_kd"]["accuracy"]


def test_cache_teacher_then_train_from_the_cache(tabular, run_config, tmp_path):
    h5py = pytest.importorskip("h5py")
    cache = tmp_path / "logits.h5"
    info = kdistill.cache_teacher(str(tabular["teacher"]), f"hdf5:{tabular['train']}", str(cache), batch_size=64)
    assert info["samples"] == 200 and info["classes"] == 3
    assert info["teacher_sha256"] == sha256(tabular["teacher"])
    assert info["kdistill_version"] == kdistill.__version__
    assert not info["from_probs"]
    # The cached logits are the teacher's, computed here in PyTorch.
    with torch.no_grad():
        want = torch.jit.load(str(tabular["teacher"]))(tabular["x_train"])
    with h5py.File(cache, "r") as f:
        got = torch.from_numpy(f["logits"][...])
        data_sha256 = f.attrs["data_sha256"]
    assert (data_sha256.decode() if isinstance(data_sha256, bytes) else str(data_sha256)) == info["data_sha256"]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    run_config["teacher"] = {"cache": str(cache)}
    r = kdistill.train(run_config)
    assert set(r["models"]) == {"student_kd"}  # a cache has no model to report
    assert accuracy(os.path.join(r["output_dir"], "student.pt"), tabular["x_test"], tabular["y_test"]) > 0.8


def test_topk_cache_from_python_matches_pytorch_and_trains(tabular, run_config, tmp_path):
    h5py = pytest.importorskip("h5py")
    cache = tmp_path / "top2.h5"
    info = kdistill.cache_teacher(str(tabular["teacher"]), f"hdf5:{tabular['train']}", str(cache), format="topk",
                                  top_k=2)
    assert info["format"] == "topk" and info["k"] == 2 and info["classes"] == 3
    assert 0 < info["bytes_per_row"] < 12 + 1  # at most 2 float16 + 2 int32 + 1 float32 per row, compressed
    # The top 2 classes of the teacher's softmax, computed here in PyTorch, and the rest as the tail.
    with torch.no_grad():
        logp = torch.log_softmax(torch.jit.load(str(tabular["teacher"]))(tabular["x_train"]), 1)
    want_lp, want_idx = logp.topk(2, 1)
    want_tail = torch.logsumexp(logp.scatter(1, want_idx, float("-inf")), 1)
    with h5py.File(cache, "r") as f:
        assert f.attrs["format"] in ("topk", b"topk") and int(f.attrs["k"]) == 2
        assert torch.equal(torch.from_numpy(f["topk_indices"][...]).long(), want_idx)
        torch.testing.assert_close(torch.from_numpy(f["topk_logprobs"][...]).float(), want_lp, rtol=2e-3, atol=2e-3)
        torch.testing.assert_close(torch.from_numpy(f["tail_logprob"][...]), want_tail, rtol=1e-4, atol=1e-4)
    with pytest.raises(kdistill.Error, match="needs top_k >= 1"):
        kdistill.cache_teacher(str(tabular["teacher"]), f"hdf5:{tabular['train']}", str(tmp_path / "x.h5"),
                               format="topk")

    run_config["teacher"] = {"cache": str(cache)}
    r = kdistill.train(run_config)
    assert accuracy(os.path.join(r["output_dir"], "student.pt"), tabular["x_test"], tabular["y_test"]) > 0.8


def test_sampled_cache_from_python_holds_draws_and_trains_streamed(tabular, run_config, tmp_path):
    h5py = pytest.importorskip("h5py")
    cache = tmp_path / "s32.h5"
    info = kdistill.cache_teacher(str(tabular["teacher"]), f"hdf5:{tabular['train']}", str(cache), format="sampled",
                                  samples=32, temperature=2.0, seed=4)
    assert info["format"] == "sampled" and info["draws"] == 32 and info["temperature"] == 2.0
    # The teacher's log-probabilities at T = 2, computed here in PyTorch, at the classes drawn.
    with torch.no_grad():
        logits = torch.jit.load(str(tabular["teacher"]))(tabular["x_train"])
    logp = torch.log_softmax(logits / 2, 1)
    with h5py.File(cache, "r") as f:
        assert f.attrs["format"] in ("sampled", b"sampled") and int(f.attrs["draws"]) == 32
        idx = torch.from_numpy(f["sampled_indices"][...]).long()
        w = torch.from_numpy(f["sampled_weights"][...].astype("float32"))
        lp = torch.from_numpy(f["sampled_logprobs"][...].astype("float32"))
        top1 = torch.from_numpy(f["top1_index"][...]).long()
    drawn = idx >= 0
    torch.testing.assert_close(w.sum(1), torch.ones(len(w)))
    assert torch.all((w * 32 - (w * 32).round()).abs() < 1e-3)  # shares of 32 draws
    torch.testing.assert_close(lp[drawn], logp.gather(1, idx.clamp(min=0))[drawn], rtol=2e-3, atol=2e-3)
    assert torch.equal(top1, logits.argmax(1))
    with pytest.raises(kdistill.Error, match="samples is for format sampled"):
        kdistill.cache_teacher(str(tabular["teacher"]), f"hdf5:{tabular['train']}", str(tmp_path / "x.h5"), samples=4)

    run_config["teacher"] = {"cache": str(cache), "stream": True}
    run_config["loss"] = {"kind": "kd", "temperature": 2.0, "alpha": 0.7}
    r = kdistill.train(run_config)
    assert accuracy(os.path.join(r["output_dir"], "student.pt"), tabular["x_test"], tabular["y_test"]) > 0.8


def test_cache_teacher_from_a_script_module(tabular, tmp_path):
    teacher = torch.jit.load(str(tabular["teacher"]))
    teacher.train()
    info = kdistill.cache_teacher(teacher, f"hdf5:{tabular['train']}", tmp_path / "logits.h5")
    assert info["samples"] == 200
    assert info["teacher_sha256"] == ""  # no file to hash
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())  # left as it was


def test_load_data_matches_the_file(tabular):
    d = kdistill.load_data(f"hdf5:{tabular['test']}")
    assert d["num_classes"] == 3
    torch.testing.assert_close(d["features"], tabular["x_test"])
    assert torch.equal(d["targets"], tabular["y_test"])


def test_train_with_a_list_of_weighted_objectives(tabular, run_config):
    """The config dict takes the YAML's list form of `loss`; metrics.jsonl names every term."""
    import json

    run_config["loss"] = [{"kind": "kd", "weight": 0.7, "temperature": 2.0},
                          {"kind": "ce", "weight": 0.3},
                          {"kind": "hint", "name": "hidden", "weight": 0.05, "student": "1", "teacher": "1",
                           "adapter": "linear"}]
    r = kdistill.train(run_config)
    got = accuracy(os.path.join(r["output_dir"], "student.pt"), tabular["x_test"], tabular["y_test"])
    assert got > 0.8
    with open(os.path.join(r["output_dir"], "metrics.jsonl")) as f:
        steps = [j for j in map(json.loads, f) if j["type"] == "step"]
    assert steps and set(steps[0]["terms"]) == {"kd", "ce", "hidden"}
    # The loss is the weighted sum of the logged terms.
    s = steps[-1]
    want = 0.7 * s["terms"]["kd"] + 0.3 * s["terms"]["ce"] + 0.05 * s["terms"]["hidden"]
    assert s["loss"] == pytest.approx(want, rel=1e-5)


def test_a_list_entry_with_an_unknown_kind_names_its_key_path(run_config):
    run_config["loss"] = [{"kind": "kd"}, {"kind": "fitnet"}]
    with pytest.raises(kdistill.Error, match=r"<dict>: loss\[1\]\.kind: expected kd, ce, soft_ce, mse, hint, at, dkd, reverse_kl, jsd, tvd, skew_kl or skew_reverse_kl"):
        kdistill.train(run_config)


def test_methods_schedules_and_generations_from_a_dict(tabular, run_config):
    """DKD warmed up over 10 steps, a generalized JSD and born-again generations, all from the
    config dict; each step's loss is the scheduled weighted sum of its logged terms."""
    run_config["loss"] = [{"kind": "dkd", "beta": 2.0, "weight": {"schedule": "linear", "start": 0, "end": 1, "steps": 10}},
                          {"kind": "ce"},
                          {"kind": "jsd", "beta": 0.9, "weight": 0.5}]
    run_config["generations"] = 2
    run_config["train"]["log_every"] = 1
    run_config["train"]["lr"] = 0.02  # DKD at T = 4 weighs 16 (alpha + beta) times its KL: a smaller step
    r = kdistill.train(run_config)
    assert set(r["models"]) == {"teacher", "student_gen1", "student_gen2"}
    got = accuracy(os.path.join(r["output_dir"], "student.pt"), tabular["x_test"], tabular["y_test"])
    assert got > 0.8
    assert r["models"]["student_gen2"]["accuracy"] == pytest.approx(got, abs=0.011)
    with open(os.path.join(r["output_dir"], "generation_1", "metrics.jsonl")) as f:
        steps = [j for j in map(json.loads, f) if j["type"] == "step"]
    for s in steps[:14]:
        w = min((s["step"] - 1) / 10, 1.0)  # the weight at the step's start (steps done before it)
        t = s["terms"]
        want = w * (t["dkd.tckd"] + 2.0 * t["dkd.nckd"]) + t["ce"] + 0.5 * t["jsd"]
        assert s["loss"] == pytest.approx(want, rel=1e-5), s


class ByteGRU(torch.nn.Module):
    """A next-byte language model as a user writes one: tokens [B, L] -> logits [B, L, 256]."""

    def __init__(self, hidden: int):
        super().__init__()
        self.embed = torch.nn.Embedding(256, hidden)
        self.gru = torch.nn.GRU(hidden, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, 256)

    def forward(self, tokens):
        y, _ = self.gru(self.embed(tokens))
        return self.head(y)


def test_a_language_model_distils_on_text_from_a_dict(tmp_path):
    text = "".join(f"the cat sat on mat {i % 5}\n" for i in range(60))
    (tmp_path / "train.txt").write_text(text)
    (tmp_path / "test.txt").write_text(text[:300])
    torch.manual_seed(0)
    torch.jit.script(ByteGRU(16)).save(str(tmp_path / "teacher.pt"))
    torch.jit.script(ByteGRU(8)).save(str(tmp_path / "student.pt"))
    r = kdistill.train({
        "threads": 1,
        "data": {"format": "text", "path": tmp_path / "train.txt", "test": tmp_path / "test.txt", "length": 16},
        "teacher": {"torchscript": tmp_path / "teacher.pt"},
        "student": {"torchscript": tmp_path / "student.pt"},
        "loss": [{"kind": "skew_reverse_kl"}, {"kind": "ce"}],
        "train": {"epochs": 2, "batch_size": 8, "optimizer": "adamw", "lr": 0.01, "micro_batches": 2},
        "output": tmp_path / "out",
    })
    kd = r["models"]["student_kd"]
    assert 0 <= kd["agreement"] <= 1
    # The student PyTorch loads scores the held-out bytes as kdistill did (next-byte top-1).
    data = torch.tensor(list((tmp_path / "test.txt").read_bytes()), dtype=torch.long)
    windows = data[: (len(data) - 1) // 16 * 16 + 1].unfold(0, 17, 16)
    model = torch.jit.load(str(tmp_path / "out" / "student.pt")).eval()
    with torch.no_grad():
        top1 = (model(windows[:, :16]).argmax(2) == windows[:, 1:]).double().mean().item()
    assert kd["accuracy"] == pytest.approx(top1, abs=1e-9)
