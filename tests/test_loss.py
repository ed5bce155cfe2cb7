"""Cross-entropy against F.cross_entropy, including logits large enough to overflow a naive exp."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmlab.loss import _CrossEntropy, cross_entropy, perplexity


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
