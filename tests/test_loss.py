"""Cross-entropy against F.cross_entropy, including logits large enough to overflow a naive exp."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmlab.config import ModelConfig
from lmlab.device import autocast, missing_compiler
from lmlab.loss import NextTokenLoss, _CrossEntropy, cross_entropy, perplexity
from lmlab.nn import TransformerLM


def _compile_or_skip(fn):
    if reason := missing_compiler(torch.device("cpu")):
        pytest.skip(reason)
    return torch.compile(fn)


@pytest.fixture(params=["one block", "blocks of 4 rows"])
def row_blocks(request, monkeypatch):
    """On a CPU the loss runs over blocks of rows; the 30 rows below fit in one block by default,
    and 44 values per block make 8 blocks of 4 rows of 11 logits, the last one short."""
    if request.param != "one block":
        monkeypatch.setattr(_CrossEntropy, "CPU_BLOCK", 44)


@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.usefixtures("row_blocks")
def test_cross_entropy_matches_torch_over_leading_dims(scale):
    torch.manual_seed(0)
    logits = (torch.randn(2, 3, 5, 11) * scale).requires_grad_()
    targets = torch.randint(0, 11, (2, 3, 5))
    loss = cross_entropy(logits, targets)
    expected = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
    assert torch.isfinite(loss)
    assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    assert_close(grad, expected_grad)


def test_cross_entropy_of_bfloat16_logits_is_float32():
    logits = torch.randn(4, 7).bfloat16()
    targets = torch.randint(0, 7, (4,))
    loss = cross_entropy(logits, targets)
    assert loss.dtype == torch.float32
    assert_close(loss, F.cross_entropy(logits.float(), targets))


def test_perplexity_is_exp_of_loss():
    assert perplexity(math.log(42.0)) == pytest.approx(42.0)


@pytest.mark.usefixtures("row_blocks")
def test_cross_entropy_passes_gradcheck_in_float64():
    logits = torch.randn(6, 9, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 9, (6,))
    assert torch.autograd.gradcheck(lambda t: cross_entropy(t, targets), (logits,))


@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compiled_cross_entropy_matches_torch(scale, dtype):
    """Compiled, the loss is the formula with autograd's gradient: the same function."""
    torch.manual_seed(0)
    logits = (torch.randn(3, 5, 11) * scale).to(dtype).requires_grad_()
    targets = torch.randint(0, 11, (3, 5))
    loss = _compile_or_skip(cross_entropy)(logits, targets)
    expected = F.cross_entropy(logits.float().reshape(-1, 11), targets.reshape(-1))
    assert loss.dtype == torch.float32
    assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    assert grad.dtype == dtype
    assert_close(grad, expected_grad)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("amp", [None, torch.bfloat16], ids=["float32", "bf16-autocast"])
def test_next_token_loss_is_the_models_cross_entropy(compiled, amp):
    """The trainer's objective: the model under autocast, then F.cross_entropy in float32."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4)
    model = TransformerLM(config)
    inputs, targets = torch.randint(0, 64, (2, 2, 16)).unbind(0)
    objective = NextTokenLoss(model, amp)
    loss = (_compile_or_skip(objective) if compiled else objective)(inputs, targets)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    with autocast(inputs.device, amp):
        logits = model(inputs)
    expected = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
    expected_grads = torch.autograd.grad(expected, list(model.parameters()))
    tolerance = {} if amp is None else {"rtol": 2e-2, "atol": 2e-3}
    assert_close(loss, expected, **tolerance)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert_close(grad, expected_grad, **tolerance)
