"""The ``step`` every lmlab optimizer shares, on top of ``torch.optim.Optimizer``'s bookkeeping."""

import torch
from torch import Tensor


class GroupwiseOptimizer(torch.optim.Optimizer):
    """``step()`` evaluates the optional closure, then updates each parameter group's parameters
    that have a gradient through :meth:`_step_group`, which subclasses implement."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(group, params)
        return loss

    def _step_group(self, group: dict, params: list[Tensor]) -> None:
        raise NotImplementedError
