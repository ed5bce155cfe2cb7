"""Gradient clipping by the global L2 norm over all parameters."""

from collections.abc import Iterable

import torch
from torch import Tensor


@torch.no_grad()
def clip_grad_norm(params: Iterable[Tensor], max_norm: float, eps: float = 1e-6) -> Tensor:
    """Scale all gradients by ``max_norm / (norm + eps)`` when their joint L2 norm exceeds it.

    Returns the norm before clipping (a 0-dim float tensor, for logging). The scale is applied as
    a clamped tensor rather than behind an ``if``, so the GPU never waits on the CPU here.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    per_tensor = torch._foreach_norm(grads)
    total = torch.stack([n.float() for n in per_tensor]).pow(2).sum().sqrt()
    scale = (max_norm / (total + eps)).clamp(max=1.0)
    torch._foreach_mul_(grads, scale.to(grads[0].dtype))
    return total
