"""lmlab.nn layers against their PyTorch built-in counterparts, on the same weights."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmlab.device import missing_compiler
from lmlab.nn import (
    Dropout,
    Embedding,
    FeedForward,
    Linear,
    RMSNorm,
    SwiGLU,
    silu,
    silu_gate,
    softmax,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_linear_matches_f_linear_and_uses_out_in_layout():
    layer = Linear(24, 40)
    assert layer.weight.shape == (40, 24)
    x = torch.randn(3, 5, 24)
    assert_close(layer(x), F.linear(x, layer.weight))


def test_linear_init_is_truncated_normal_with_glorot_std():
    layer = Linear(300, 500)
    std = math.sqrt(2 / 800)
    assert layer.weight.std().item() == pytest.approx(
        std * 0.986, rel=0.03
    )  # cutting at 3 std shrinks it
    assert layer.weight.abs().max().item() <= 3 * std + 1e-6


def test_embedding_matches_f_embedding_and_init():
    emb = Embedding(1000, 64)
    ids = torch.randint(0, 1000, (4, 7))
    assert_close(emb(ids), F.embedding(ids, emb.weight))
    assert emb.weight.abs().max().item() <= 3.0 + 1e-6
    assert emb.weight.std().item() == pytest.approx(0.986, rel=0.03)


@pytest.mark.parametrize("bad_id", [-1, 1000])
def test_embedding_rejects_out_of_range_ids(bad_id):
    emb = Embedding(1000, 8)
    with pytest.raises(ValueError, match=f"token id {bad_id} is out of range"):
        emb(torch.tensor([[1, bad_id]]))


def test_rmsnorm_matches_torch_rmsnorm():
    ours = RMSNorm(64)
    ours.weight.data = torch.randn(64)
    reference = torch.nn.RMSNorm(64, eps=1e-5)
    reference.weight.data = ours.weight.data.clone()
    x = torch.randn(2, 9, 64) * 5
    assert_close(ours(x), reference(x))


def test_rmsnorm_computes_in_float32_and_returns_input_dtype():
    norm = RMSNorm(64)
    x = torch.randn(4, 64) * 100
    out = norm(x.bfloat16())
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), norm(x.bfloat16().float()), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_softmax_matches_f_softmax_without_overflow(scale):
    x = torch.randn(3, 4, 50) * scale
    for dim in (-1, 0, 1):
        out = softmax(x, dim)
        assert torch.isfinite(out).all()
        assert_close(out, F.softmax(x, dim=dim))


def test_softmax_gradient_matches_f_softmax_and_gradcheck():
    x = torch.randn(3, 5, 7, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 5, 7, dtype=torch.float64)
    (ours,) = torch.autograd.grad((softmax(x, 1) * weights).sum(), x)
    (theirs,) = torch.autograd.grad((F.softmax(x, dim=1) * weights).sum(), x)
    assert_close(ours, theirs)
    assert torch.autograd.gradcheck(lambda t: softmax(t, -1), (x,))


def test_silu_matches_f_silu():
    x = torch.randn(100) * 10
    assert_close(silu(x), F.silu(x))


def test_silu_gate_matches_the_formula_with_gradients():
    a, b = (torch.randn(3, 7, 24, requires_grad=True) for _ in range(2))
    ours, expected = silu_gate(a, b), F.silu(a) * b
    assert_close(ours, expected)
    weights = torch.randn_like(ours)
    assert_close(torch.autograd.grad((ours * weights).sum(), (a, b)),
                 torch.autograd.grad((expected * weights).sum(), (a, b)))
    a64, b64 = (torch.randn(4, 5, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(silu_gate, (a64, b64))


def test_swiglu_matches_builtin_formula():
    ffn = SwiGLU(32, 96)
    x = torch.randn(2, 5, 32)
    expected = F.linear(
        F.silu(F.linear(x, ffn.w1.weight)) * F.linear(x, ffn.w3.weight), ffn.w2.weight
    )
    assert_close(ffn(x), expected)


def test_silu_feed_forward_matches_builtin_formula():
    ffn = FeedForward(32, 128, "silu")
    x = torch.randn(2, 5, 32)
    assert_close(ffn(x), F.linear(F.silu(F.linear(x, ffn.w1.weight)), ffn.w2.weight))


def test_layers_honour_device_and_dtype():
    for module in (
        Linear(4, 8, dtype=torch.float64),
        Embedding(10, 4, dtype=torch.float64),
        RMSNorm(4, dtype=torch.float64),
        SwiGLU(4, 8, device="cpu", dtype=torch.float64),
    ):
        assert all(p.dtype == torch.float64 for p in module.parameters())


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_dropout_zeroes_a_fraction_p_and_keeps_the_expected_value(compiled: bool):
    """Compiled, inductor draws the mask's integers itself: the fraction must hold there too."""
    if compiled and (reason := missing_compiler(torch.device("cpu"))):
        pytest.skip(reason)
    dropout = Dropout(0.25)
    layer = torch.compile(dropout) if compiled else dropout
    x = torch.ones(200_000, requires_grad=True)
    y = layer(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert_close(y.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient flows through the kept entries only
    half = layer(torch.ones(200_000, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16
    assert (half == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)


def test_dropout_is_the_identity_when_evaluating_or_off_and_rejects_bad_p():
    x = torch.randn(4, 8)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0)(x) is x
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="dropout"):
            Dropout(bad)
