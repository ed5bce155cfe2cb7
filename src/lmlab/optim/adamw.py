"""AdamW (Loshchilov & Hutter, 2019) on top of ``torch.optim.Optimizer``'s bookkeeping."""

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from lmlab.optim.base import GroupwiseOptimizer


def adamw_update(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    step: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> None:
    """One AdamW update, in place, of ``params`` and their moments (``step`` counts from 1).

    Runs as ``torch._foreach_*`` ops: on a GPU over all the tensors at once (one kernel launch
    per op instead of one per op per tensor); on a CPU over one tensor at a time, so that its
    data stays in cache from one op to the next instead of streaming every tensor through
    memory once per op.
    """
    beta1, beta2 = betas
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)
    # lr * m / (sqrt(v) / bc2 + eps) == (lr * bc2) * m / (sqrt(v) + eps * bc2): one pass fewer
    step_size = lr * bias_correction2_sqrt / bias_correction1
    on_cpu = bool(params) and params[0].device.type == "cpu"
    batches = [slice(i, i + 1) for i in range(len(params))] if on_cpu else [slice(None)]
    for at in batches:
        p, g, m, v = params[at], grads[at], exp_avgs[at], exp_avg_sqs[at]
        if weight_decay != 0:
            torch._foreach_mul_(p, 1 - lr * weight_decay)
        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=1 - beta2)
        denominators = torch._foreach_sqrt(v)
        torch._foreach_add_(denominators, eps * bias_correction2_sqrt)
        torch._foreach_addcdiv_(p, m, denominators, value=-step_size)


def adamw_group_step(state: dict, params: list[Tensor], group: dict) -> None:
    """One AdamW step of a parameter group's ``params`` (those with a gradient).

    ``state`` is the optimizer's per-parameter state, where the moments are created on first use.
    All parameters of a group advance together, so they share a step count.
    """
    states = [state[p] for p in params]
    for param, param_state in zip(params, states, strict=True):
        if not param_state:
            param_state["step"] = 0
            param_state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            param_state["exp_avg_sq"] = torch.zeros_like(param,
                                                          memory_format=torch.preserve_format)
        param_state["step"] += 1
    adamw_update(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                 [s["exp_avg_sq"] for s in states], step=states[0]["step"], lr=group["lr"],
                 betas=group["betas"], eps=group["eps"], weight_decay=group["weight_decay"])


class AdamW(GroupwiseOptimizer):
    """Adam with decoupled weight decay and bias correction.

    Per parameter, with gradient ``g`` at step ``t``::

        p <- p - lr * weight_decay * p                   (decay, not part of the gradient)
        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)

    The update runs as ``torch._foreach_*`` ops (:func:`adamw_update`).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ):
        if lr < 0:
            raise ValueError(f"AdamW lr must be >= 0, got {lr}")
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"AdamW betas must lie in [0, 1), got {betas}")
        if eps <= 0 or weight_decay < 0:
            raise ValueError(
                f"AdamW needs eps > 0 and weight_decay >= 0, got {eps}, {weight_decay}"
            )
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _step_group(self, group: dict, params: list[Tensor]) -> None:
        adamw_group_step(self.state, params, group)
