"""Cross-entropy loss and perplexity, written out so the numerics are visible."""

import math

from torch import Tensor


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``.

    Shapes: logits ``(..., vocab)``, targets ``(...)`` of integer ids; returns a scalar.
    Computed in float32 as ``logsumexp(logits) - logits[target]`` with the max subtracted first,
    so logits of 1e4 neither overflow ``exp`` nor lose the target's share. The max is detached:
    the loss does not depend on it, so no gradient needs to flow through it.
    """
    logits = logits.float()
    peak = logits.amax(dim=-1, keepdim=True).detach()
    log_sum_exp = (logits - peak).exp().sum(dim=-1).log() + peak.squeeze(-1)
    target_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (log_sum_exp - target_logits).mean()


def perplexity(loss: float) -> float:
    """``exp(loss)``: the effective number of equally likely next tokens (loss in nats/token)."""
    return math.exp(loss)
