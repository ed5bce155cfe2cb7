"""Muon (Jordan et al., 2024): momentum SGD whose update for each weight matrix is orthogonalised.

Adam scales every coordinate of a gradient on its own; Muon instead replaces the momentum of a
whole matrix ``M = U S V^T`` by ``U V^T``, the nearest semi-orthogonal matrix. Every direction
the gradient points in then moves by the same amount, including the rare directions that Adam's
update leaves nearly untouched, and small Transformers reach a given loss in fewer steps.

Muon is for the 2-D weights inside the network. Embeddings, the output projection and norm gains
keep AdamW (their rows are looked up or scored one token at a time, not mixed as a whole), so
:class:`Muon` holds both kinds of parameter group: ``algorithm = "muon"`` or ``"adamw"``.
"""

from collections.abc import Iterable

import torch
from torch import Tensor

from lmlab.optim.adamw import adamw_group_step
from lmlab.optim.base import GroupwiseOptimizer

_NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""Coefficients of the quintic ``a x + b x^3 + c x^5`` from Jordan et al.: chosen for the
steepest slope at 0, so small singular values grow fast; the result's singular values land in
roughly [0.7, 1.2] instead of exactly 1, which training does not mind."""


def orthogonalize(matrix: Tensor, steps: int = 5, dtype: torch.dtype | None = None) -> Tensor:
    """Approximately ``U V^T`` for ``matrix = U S V^T`` ``(..., rows, cols)``, by Newton-Schulz.

    Each step applies the odd polynomial above to the singular values (``x^3`` is
    ``X X^T X``), which only needs matmuls; dividing by the Frobenius norm first puts every
    singular value in ``[0, 1]`` where the iteration converges. Works on the wide orientation so
    the Gram matrix is the smaller ``(min, min)`` one. Leading dimensions are a batch of matrices,
    each orthogonalised on its own; the matmuls run in ``dtype`` (default: the matrix's own).
    Each step is two fused multiply-adds (``baddbmm``, as ``torch.optim.Muon`` uses ``addmm``):
    fewer passes than separate products and sums, and in bfloat16 the same rounding as
    ``torch.optim.Muon`` (measured: docs/benchmarks.md, "Optimizer: one Muon step").
    """
    a, b, c = _NEWTON_SCHULZ_COEFFICIENTS
    x = matrix / (matrix.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    if dtype is not None:
        x = x.to(dtype)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    batch_shape = x.shape[:-2]
    x = x.reshape(-1, *x.shape[-2:])  # baddbmm wants exactly one batch dimension
    for _ in range(steps):
        gram = x @ x.mT
        polynomial = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b G + c G^2
        x = torch.baddbmm(x, polynomial, x, beta=a)  # a X + (b G + c G^2) X
    x = x.reshape(*batch_shape, *x.shape[-2:])
    return x.mT if tall else x


def orthogonalize_all(matrices: list[Tensor], steps: int = 5,
                      dtype: torch.dtype | None = None) -> list[Tensor]:
    """:func:`orthogonalize` of each matrix, in the matrices' own dtype; those of one shape (a
    tall one as its transpose) go through the iteration together, as one batch.

    Why: a small model's matrices are too small to keep a CPU's cores busy one at a time, so a
    batch of them takes less time than the same matrices one by one, as ``torch.optim.Muon``
    goes (measured: docs/benchmarks.md, "Optimizer: one Muon step").
    """
    tall = [m.shape[-2] > m.shape[-1] for m in matrices]
    wide = [m.mT if is_tall else m for m, is_tall in zip(matrices, tall, strict=True)]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, matrix in enumerate(wide):
        by_shape.setdefault(tuple(matrix.shape), []).append(index)
    results: dict[int, Tensor] = {}
    for indices in by_shape.values():
        batch = orthogonalize(torch.stack([wide[i].float() for i in indices]), steps, dtype)
        for index, result in zip(indices, batch, strict=True):
            result = result.to(matrices[index].dtype)
            results[index] = result.mT if tall[index] else result
    return [results[index] for index in range(len(matrices))]


class Muon(GroupwiseOptimizer):
    """Muon for groups with ``algorithm="muon"`` (2-D weights), AdamW for ``algorithm="adamw"``.

    Per Muon parameter ``W (rows, cols)`` with gradient ``g``::

        m <- momentum * m + (1 - momentum) * g
        u <- orthogonalize(momentum * m + (1 - momentum) * g)     (Nesterov; m itself without)
        W <- W * (1 - lr * weight_decay) - lr * sqrt(max(1, rows / cols)) * u

    The ``sqrt(rows / cols)`` factor gives tall matrices the same per-entry step size as square
    ones. AdamW groups take ``betas`` and ``eps`` as :class:`~lmlab.optim.AdamW` does.
    """

    def __init__(
        self,
        params: Iterable[dict],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        ns_dtype: torch.dtype = torch.float32,
    ):
        if lr < 0 or not 0.0 <= momentum < 1.0 or ns_steps < 1 or weight_decay < 0:
            raise ValueError(
                f"Muon needs lr >= 0, 0 <= momentum < 1, ns_steps >= 1 and weight_decay >= 0, "
                f"got {lr}, {momentum}, {ns_steps}, {weight_decay}"
            )
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        betas=betas, eps=eps, weight_decay=weight_decay, algorithm="muon")
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        """Precision of the Newton-Schulz matmuls (bfloat16 is enough for them; see
        :func:`lmlab.device.resolve_matmul_dtype` for when it is also faster)."""
        for group in self.param_groups:
            if group["algorithm"] not in ("muon", "adamw"):
                raise ValueError(f"unknown algorithm {group['algorithm']!r}: muon or adamw")
            if group["algorithm"] == "muon" and any(p.dim() != 2 for p in group["params"]):
                raise ValueError("Muon orthogonalises matrices: give 1-D parameters to an "
                                 "algorithm='adamw' group")

    def _step_group(self, group: dict, params: list[Tensor]) -> None:
        if group["algorithm"] == "adamw":
            adamw_group_step(self.state, params, group)
        else:
            self._muon_step(group, params)

    def _muon_step(self, group: dict, params: list[Tensor]) -> None:
        lr, momentum = group["lr"], group["momentum"]
        directions = []
        for param in params:
            state = self.state[param]
            if not state:
                state["momentum_buffer"] = torch.zeros_like(param)
            buffer, grad = state["momentum_buffer"], param.grad
            buffer.lerp_(grad, 1 - momentum)
            directions.append(grad.lerp(buffer, momentum) if group["nesterov"] else buffer)
        updates = orthogonalize_all(directions, group["ns_steps"], self.ns_dtype)
        for param, update in zip(params, updates, strict=True):
            if group["weight_decay"] != 0:
                param.mul_(1 - lr * group["weight_decay"])
            param.add_(update, alpha=-lr * max(1.0, param.shape[0] / param.shape[1]) ** 0.5)
