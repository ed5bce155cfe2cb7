"""Cross-entropy loss and perplexity, written out so the numerics are visible."""

import math

import torch
from torch import Tensor


class _CrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of rows of logits ``(n, vocab)`` with its gradient written out.

    Forward: ``logsumexp(logits) - logits[target]``, with the row max subtracted before ``exp``
    so logits of 1e4 neither overflow nor lose the target's share.
    Backward: ``d loss / d logits = (softmax(logits) - onehot(target)) / n``. Written by hand it
    takes three passes over the logits (the largest tensor of a small LM) instead of autograd's
    eight or so.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:
        peak = logits.amax(dim=-1, keepdim=True)
        log_sum_exp = (logits - peak).exp_().sum(dim=-1, keepdim=True).log_().add_(peak)
        ctx.save_for_backward(logits, targets, log_sum_exp)
        target_logits = logits.gather(-1, targets.unsqueeze(-1))
        return (log_sum_exp - target_logits).mean()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        logits, targets, log_sum_exp = ctx.saved_tensors
        probs = (logits - log_sum_exp).exp_()
        probs.scatter_add_(-1, targets.unsqueeze(-1), torch.full_like(log_sum_exp, -1.0))
        return probs.mul_(grad / logits.shape[0]), None


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``.

    Shapes: logits ``(..., vocab)``, targets ``(...)`` of integer ids; returns a scalar.
    Computed in at least float32 (bf16 log-probabilities are too coarse).
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return _CrossEntropy.apply(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def perplexity(loss: float) -> float:
    """``exp(loss)``: the effective number of equally likely next tokens (loss in nats/token)."""
    return math.exp(loss)
