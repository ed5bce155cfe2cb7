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
    On a CPU both run over blocks of rows small enough to stay in cache (``CPU_BLOCK`` values),
    so the passes after the first read cache instead of memory and no logits-sized temporary is
    allocated. A GPU takes all rows at once (one kernel per pass).
    Against autograd over the formula it pays in memory (a step keeps less for its backward);
    in speed the two are within noise (measured: docs/benchmarks.md, "The architecture change
    (issue 16), before and after; what each hand-written backward pays").
    """

    CPU_BLOCK = 1 << 19

    @staticmethod
    def _row_blocks(logits: Tensor) -> list[slice]:
        n, vocab = logits.shape
        rows = max(1, _CrossEntropy.CPU_BLOCK // vocab) if logits.device.type == "cpu" else n
        return [slice(start, start + rows) for start in range(0, n, rows)]

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:
        log_sum_exp = logits.new_empty(logits.shape[0], 1)
        for rows in _CrossEntropy._row_blocks(logits):
            block = logits[rows]
            peak = block.amax(dim=-1, keepdim=True)
            block_sum = (block - peak).exp_().sum(dim=-1, keepdim=True)
            log_sum_exp[rows] = block_sum.log_().add_(peak)
        ctx.save_for_backward(logits, targets, log_sum_exp)
        target_logits = logits.gather(-1, targets.unsqueeze(-1))
        return (log_sum_exp - target_logits).mean()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        logits, targets, log_sum_exp = ctx.saved_tensors
        scale = grad / logits.shape[0]
        grad_logits = torch.empty_like(logits)
        for rows in _CrossEntropy._row_blocks(logits):
            probs = torch.sub(logits[rows], log_sum_exp[rows], out=grad_logits[rows]).exp_()
            probs.mul_(scale)
        grad_logits.scatter_add_(-1, targets.unsqueeze(-1), (-scale).expand_as(log_sum_exp))
        return grad_logits, None


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
