"""Batches of token windows: random ones for training (with or without replacement), ordered
ones for validation.

The token file itself (memory-mapped ``.bin``, its sidecar, the checks) is :mod:`lmlab.tokens`;
this module only cuts windows of ``context_length + 1`` ids out of an array of ids and splits them
into inputs and next-token targets on the training device.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lmlab.errors import CheckpointError


def _windows(tokens: np.ndarray, starts: np.ndarray, context_length: int) -> Tensor:
    """Rows ``tokens[s : s + context_length + 1]`` for each start, as int64, shape
    ``(len(starts), context_length + 1)``."""
    index = starts[:, None] + np.arange(context_length + 1)
    return torch.from_numpy(tokens[index].astype(np.int64))


def _to_device(rows: Tensor, device: torch.device | str) -> tuple[Tensor, Tensor]:
    """Split rows into (inputs, next-token targets) on ``device``; on CUDA the copy goes through
    pinned memory and does not block, so it overlaps with the previous step's GPU work."""
    device = torch.device(device)
    if device.type == "cuda":
        rows = rows.pin_memory().to(device, non_blocking=True)
    else:
        rows = rows.to(device)
    return rows[:, :-1], rows[:, 1:]


def get_batch(
    tokens: np.ndarray,
    batch_size: int,
    context_length: int,
    device: torch.device | str,
    rng: np.random.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """A batch of random windows: inputs and their next-token targets, each
    ``(batch_size, context_length)`` int64 on ``device``.

    >>> x, y = get_batch(np.arange(100), 4, 8, "cpu", np.random.default_rng(0))
    >>> x.shape, bool((y == x + 1).all())
    (torch.Size([4, 8]), True)
    """
    rng = rng if rng is not None else np.random.default_rng()
    starts = rng.integers(0, len(tokens) - context_length, size=batch_size)
    return _to_device(_windows(tokens, starts, context_length), device)


class RandomBatches:
    """Endless random training batches from a seeded generator whose state is the data position.

    Two ways to draw the windows (``data.sampling``):

    - ``"random"``: every window starts anywhere, uniformly and independently (with
      replacement). Over ``k`` passes a token is seen ``k`` times on average, some far more.
    - ``"epochs"``: each pass cuts the file into non-overlapping windows from a random offset
      below ``context_length`` and visits them in a shuffled order (without replacement), so
      every token is seen once per pass. It matters when a run makes many passes over a small
      file, where the tokens drawn most often are the ones memorised first.

    Each optimizer step draws the starts of the whole global batch (``batch_size * grad_accum *
    world_size`` windows) at once from a generator that every rank seeds alike, and each rank
    reads only its own slice: rank ``r`` takes the ``r``-th block of ``batch_size * grad_accum``
    starts, cut into ``grad_accum`` micro-batches. So ranks train on different windows, a step's
    global batch is the same however it is split (2 ranks x batch B, 1 rank x batch 2B and
    grad_accum 2 x batch B see the same windows), and the state does not depend on the world
    size: a run can resume on another number of processes if it keeps the global batch.
    ``state_dict()`` goes into the checkpoint; after ``load_state_dict`` the sampler yields
    exactly the batches it would have yielded had the run never stopped. A pass's order is not
    saved (it would be as large as the file's window count): the state holds the generator as it
    was when the pass was drawn, and loading draws the same order again.
    """

    def __init__(self, tokens: np.ndarray, batch_size: int, context_length: int,
                 device: torch.device | str, seed: int, *, grad_accum: int = 1, rank: int = 0,
                 world_size: int = 1, sampling: str = "random") -> None:
        if sampling not in ("random", "epochs"):
            raise ValueError(f"sampling must be 'random' or 'epochs', not {sampling!r}")
        self.tokens = tokens
        self.batch_size = batch_size
        self.context_length = context_length
        self.device = device
        self.per_rank = batch_size * grad_accum
        self.rank, self.world_size = rank, world_size
        self.sampling = sampling
        self.num_starts = len(tokens) - context_length
        """Window starts ``0 .. num_starts - 1``: a window is ``context_length + 1`` ids."""
        self.rng = np.random.default_rng(seed)
        if sampling == "epochs":
            self._new_pass()

    def next_step(self) -> list[tuple[Tensor, Tensor]]:
        """This rank's micro-batches of the next step: ``grad_accum`` pairs of ``(inputs,
        targets)``, each ``(batch_size, context_length)``."""
        starts = self._starts(self.per_rank * self.world_size)
        mine = starts[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
        return [_to_device(_windows(self.tokens, mine[i:i + self.batch_size], self.context_length),
                           self.device) for i in range(0, self.per_rank, self.batch_size)]

    def _starts(self, count: int) -> np.ndarray:
        """The next ``count`` window starts of the global batch."""
        if self.sampling == "random":
            return self.rng.integers(0, self.num_starts, size=count)
        parts = []
        while count:
            part = self._order[self._next:self._next + count]
            self._next += len(part)
            count -= len(part)
            parts.append(part)
            if self._next == len(self._order):
                self._new_pass()
        return np.concatenate(parts)

    def _new_pass(self) -> None:
        self._pass_state = self.rng.bit_generator.state
        self._order, self._next = self._draw_pass(), 0

    def _draw_pass(self) -> np.ndarray:
        """The window starts of one pass, shuffled: every ``context_length``-th position from an
        offset below ``context_length`` (and below the number of starts, so a pass is never
        empty)."""
        offset = self.rng.integers(0, min(self.context_length, self.num_starts))
        return self.rng.permutation(np.arange(offset, self.num_starts, self.context_length))

    def state_dict(self) -> dict[str, Any]:
        if self.sampling == "random":
            return {"rng": self.rng.bit_generator.state}
        return {"rng": self._pass_state, "next": self._next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if ("next" in state) != (self.sampling == "epochs"):
            raise CheckpointError(f"the checkpoint's data position is not one of data.sampling = "
                                  f"{self.sampling!r}: the run was saved with the other sampling")
        self.rng.bit_generator.state = state["rng"]
        if self.sampling == "epochs":
            self._new_pass()  # the same order again, from the generator as the pass was drawn
            self._next = state["next"]


@dataclass(frozen=True)
class EvalBatch:
    """Validation inputs/targets ``(batch, context_length)``; only targets at positions
    ``>= score_from`` are scored (the last, overlapping window re-reads tokens already scored)."""

    inputs: Tensor
    targets: Tensor
    score_from: int = 0


def sequential_batches(tokens: np.ndarray, batch_size: int, context_length: int,
                       device: torch.device | str, *, rank: int = 0,
                       world_size: int = 1) -> Iterator[EvalBatch]:
    """Every target of the file exactly once, in order: non-overlapping windows, then one last
    window ending at the file's end that scores only the targets the others missed.

    Together they score tokens ``1 .. len(tokens) - 1`` (the first token has no context). With
    ``world_size`` ranks, rank ``r`` gets batches ``r, r + world_size, ...``: together the ranks
    score the file once.

    >>> [(b.inputs.shape[0], b.score_from) for b in sequential_batches(np.arange(20), 2, 4, "cpu")]
    [(2, 0), (2, 0), (1, 1)]
    """
    num_targets = len(tokens) - 1
    starts = np.arange(0, num_targets - context_length + 1, context_length)
    plans = [(starts[i:i + batch_size], 0) for i in range(0, len(starts), batch_size)]
    leftover = num_targets - len(starts) * context_length
    if leftover:
        plans.append((np.array([num_targets - context_length]), context_length - leftover))
    return _shard(plans, tokens, context_length, device, rank, world_size)


def sampled_batches(tokens: np.ndarray, batch_size: int, context_length: int,
                    device: torch.device | str, num_batches: int, seed: int, *, rank: int = 0,
                    world_size: int = 1) -> Iterator[EvalBatch]:
    """``num_batches`` random validation batches, the same ones every time for a given seed, so
    evaluations during a run are comparable (shared among ranks as in
    :func:`sequential_batches`)."""
    rng = np.random.default_rng(seed)
    plans = ((rng.integers(0, len(tokens) - context_length, size=batch_size), 0)
             for _ in range(num_batches))
    return _shard(plans, tokens, context_length, device, rank, world_size)


def _shard(plans: Iterable[tuple[np.ndarray, int]], tokens: np.ndarray, context_length: int,
           device: torch.device | str, rank: int, world_size: int) -> Iterator[EvalBatch]:
    """The batches ``(starts, score_from)`` of this rank's share, read only when it is theirs."""
    for i, (starts, score_from) in enumerate(plans):
        if i % world_size == rank:
            yield EvalBatch(*_to_device(_windows(tokens, starts, context_length), device),
                            score_from=score_from)
