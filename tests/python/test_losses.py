"""kdistill's losses from Python against independent formulas written with torch.nn.functional,
in float64: values, gradients, and autograd through a model."""
import pytest

kdistill = pytest.importorskip("kdistill", reason="kdistill is not importable: build it and set PYTHONPATH=build/python")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def reference_kd(s, t, y, temperature, alpha):
    """Hinton et al.: alpha * T^2 * batchmean KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)."""
    soft = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")
    return soft * temperature * temperature * alpha + (1 - alpha) * F.cross_entropy(s, y)


def batch(seed, b=16, c=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = (3 * torch.randn(b, c, generator=g)).to(dtype)
    t = (3 * torch.randn(b, c, generator=g)).to(dtype)
    y = torch.randint(0, c, (b,), generator=g)
    return s, t, y


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (3.0, 1.0), (0.5, 0.3)])
def test_kd_loss_matches_the_formula(temperature, alpha):
    s, t, y = batch(0)
    got = kdistill.kd_loss(s, t, y, temperature=temperature, alpha=alpha)
    want = reference_kd(s, t, y, temperature, alpha)
    assert got.dim() == 0
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_kd_loss_defaults_are_the_librarys():
    s, t, y = batch(1)
    assert kdistill.kd_loss(s, t, y).item() == pytest.approx(reference_kd(s, t, y, 4.0, 0.9).item(), rel=1e-6)


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.9), (2.0, 1.0)])
def test_kd_loss_gradient_matches_the_formula_and_skips_the_teacher(temperature, alpha):
    s, t, y = batch(2)
    s1, t1 = s.clone().requires_grad_(), t.clone().requires_grad_()
    got_s, got_t = torch.autograd.grad(kdistill.kd_loss(s1, t1, y, temperature=temperature, alpha=alpha),
                                       [s1, t1], allow_unused=True)
    s2 = s.clone().requires_grad_()
    (want_s,) = torch.autograd.grad(reference_kd(s2, t, y, temperature, alpha), [s2])
    torch.testing.assert_close(got_s, want_s, rtol=1e-6, atol=1e-12)
    assert got_t is None or torch.count_nonzero(got_t) == 0  # the teacher gets no gradient


def test_autograd_flows_into_a_model():
    torch.manual_seed(0)
    student, teacher = nn.Linear(6, 4), nn.Linear(6, 4)
    x, y = torch.randn(8, 6), torch.randint(0, 4, (8,))
    with torch.no_grad():
        t = teacher(x)
    kdistill.kd_loss(student(x), t, y, temperature=2.0, alpha=0.5).backward()
    assert student.weight.grad is not None and torch.count_nonzero(student.weight.grad) > 0
    assert teacher.weight.grad is None


def test_float32_logits_give_float32_loss():
    s, t, y = batch(3, dtype=torch.float32)
    got = kdistill.kd_loss(s, t, y, temperature=4.0, alpha=0.9)
    assert got.dtype == torch.float32
    want = reference_kd(s.double(), t.double(), y, 4.0, 0.9)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


def test_unlabelled_samples_get_the_soft_term_only():
    s, t, y = batch(4, b=10)
    y[::3] = -1
    labelled = y != -1
    temperature, alpha = 3.0, 0.6
    soft = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1), reduction="batchmean")
    want = alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(s[labelled], y[labelled])
    got = kdistill.kd_loss(s, t, y, temperature=temperature, alpha=alpha, ignore_index=-1)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


def test_kd_soft_loss():
    s, t, _ = batch(5)
    want = F.kl_div(F.log_softmax(s / 2.0, 1), F.softmax(t / 2.0, 1), reduction="batchmean") * 4.0
    assert kdistill.kd_soft_loss(s, t, temperature=2.0).item() == pytest.approx(want.item(), rel=1e-6)


def test_soft_target_cross_entropy():
    s, t, _ = batch(6)
    want = -(F.softmax(t / 3.0, 1) * F.log_softmax(s / 3.0, 1)).sum(1).mean() * 9.0
    assert kdistill.soft_target_cross_entropy(s, t, temperature=3.0).item() == pytest.approx(want.item(), rel=1e-6)


def test_logit_mse():
    s, t, _ = batch(7)
    assert kdistill.logit_mse(s, t).item() == pytest.approx(F.mse_loss(s, t).item(), rel=1e-6)


def test_masked_cross_entropy():
    s, _, y = batch(8, b=12)
    y[:5] = -1
    want = F.cross_entropy(s, y, ignore_index=-1)
    assert kdistill.masked_cross_entropy(s, y).item() == pytest.approx(want.item(), rel=1e-6)
    assert kdistill.masked_cross_entropy(s, torch.full_like(y, -1)).item() == 0.0


def test_options_are_keyword_only():
    s, t, y = batch(9)
    with pytest.raises(TypeError):
        kdistill.kd_loss(s, t, y, 4.0)


def buckets_in_pytorch(s, t, k, temperature):
    """sparse.h's buckets, written out in PyTorch: the teacher's top k classes and one tail bucket,
    softened at T (the student's tail class by class, the teacher's shaped like the student's)."""
    p, q = torch.softmax(t, -1), torch.softmax(s, -1)
    idx = p.topk(k, -1).indices
    in_top = torch.zeros_like(p, dtype=torch.bool).scatter(-1, idx, True)
    p_tail, q_tail = (p * ~in_top).sum(-1), (q * ~in_top).sum(-1)
    q_tail_t = (q ** (1 / temperature) * ~in_top).sum(-1)
    p_b = torch.cat([p.gather(-1, idx) ** (1 / temperature), ((p_tail / q_tail) ** (1 / temperature) * q_tail_t)[:, None]], -1)
    q_b = torch.cat([q.gather(-1, idx) ** (1 / temperature), q_tail_t[:, None]], -1)
    p_t, q_t = p_b / p_b.sum(-1, keepdim=True), q_b / q_b.sum(-1, keepdim=True)
    return temperature ** 2 * (p_t * (p_t.log() - q_t.log())).sum(-1).mean()


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_sparse_divergence_loss_is_the_bucket_kl_and_the_dense_kl_at_k_equal_c(temperature):
    torch.manual_seed(5)
    s, t = torch.randn(6, 7, dtype=torch.float64), 3 * torch.randn(6, 7, dtype=torch.float64)
    idx, lp, tail = kdistill.topk_targets(t, 3)
    assert idx.shape == (6, 3) and tail.shape == (6,)
    got = kdistill.sparse_divergence_loss(s, idx, lp, tail, temperature=temperature)
    torch.testing.assert_close(got, buckets_in_pytorch(s, t, 3, temperature), rtol=1e-10, atol=1e-12)
    full = kdistill.topk_targets(t, 7)
    assert torch.isinf(full[2]).all()
    dense = kdistill.kd_soft_loss(s, t, temperature=temperature)
    torch.testing.assert_close(kdistill.sparse_divergence_loss(s, *full, temperature=temperature), dense,
                               rtol=1e-10, atol=1e-12)
