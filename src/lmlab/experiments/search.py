"""A search on a log scale: from the finished results of one series, the values to try next.

A series (one combination of a sweep's other varied values: a batch size, an architecture arm)
tries values ``start * factor**(i / 2)`` at whole-step indices ``i = -2, 0, 2`` first (the
start and its two neighbours), then adds a value a factor further out on each side where the
best has no neighbour yet, and (with ``edge``) climbs above the largest value tried until one
diverges; once the best is bracketed it may add one value at the geometric midpoint (an odd
index) between the best and its better neighbour. A value *diverged* when any of its seeds
diverged (a rate that fails one seed in three is not one a student can use) and *finished*
when all did; the best is the finished value with the lowest mean final validation loss. The
cap bounds the values per series; a series that reaches it says what it still lacks.

This is decision logic only, on :class:`Result`\\ s: :mod:`lmlab.experiments.planning` turns
the indices into points, and a re-run reaches the same decisions from the same finished runs.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lmlab.experiments.sweep import SearchSpec

FIRST = (-2, 0, 2)
"""The first round's indices: the start and its neighbours a factor either side."""


def significant(value: float) -> float:
    """``value`` to 4 significant digits: every searched or rescaled rate is one, so that a
    run's name shows the value it trained at in full.

    >>> significant(0.003 * 8 ** 0.5)
    0.008485
    """
    return float(f"{value:.4g}")


def value_at(spec: SearchSpec, index: int, scale: float = 1.0) -> float:
    """The value at a half-step ``index``, times ``scale`` (a series' ``--lr-scaling``).

    >>> spec = SearchSpec(key="optim.lr_max", start=3e-3, factor=3)
    >>> [value_at(spec, i) for i in (-2, -1, 0, 2, 4)]
    [0.001, 0.001732, 0.003, 0.009, 0.027]
    """
    base = significant(spec.start * spec.factor ** (index / 2))
    return base if scale == 1.0 else significant(base * scale)


@dataclass(frozen=True)
class Result:
    """How one value of a series ended over its seeds."""

    loss: float | None
    """The mean final validation loss over its seeds, when every seed finished."""
    diverged: bool
    """Whether any seed diverged."""

    @property
    def finished(self) -> bool:
        return self.loss is not None and not self.diverged


@dataclass(frozen=True)
class Decision:
    """What a series does next: the indices to run, or why it stops."""

    add: tuple[int, ...]
    state: str
    """``searching`` (``add`` is not empty), ``settled``, ``capped`` (the cap stopped it short
    of a bracket or an edge) or ``stuck`` (a value neither finished nor diverged)."""
    note: str
    """One line for the sweep's output: what was added and why, or how the series ended."""


def decide(spec: SearchSpec, results: Mapping[int, Result | None],
           scale: float = 1.0) -> Decision:
    """The next step of one series from the results of the indices it tried (None for a value
    whose seeds did not all end: failed, interrupted or not run yet); ``scale`` only changes
    how its notes write the values (those that ran, after ``--lr-scaling``)."""
    def values(indices: list[int]) -> str:
        return ", ".join(f"{value_at(spec, i, scale):g}" for i in indices)

    missing = [i for i in FIRST if i not in results]
    if missing:
        return Decision(tuple(missing), "searching", f"trying {values(missing)}")
    stuck = sorted(i for i, result in results.items() if result is None)
    if stuck:
        return Decision((), "stuck", f"{values(stuck)} did not end (failed or stopped): the "
                        "search of this series goes on when the sweep runs again")
    wanted = _wanted(spec, results)
    room = spec.max_points - len(results)
    if wanted and room <= 0:
        why = wanted[0][1].format(best=values([_best_whole(results) or 0]),
                                  top=values([max(i for i in results if i % 2 == 0)]))
        return Decision((), "capped", f"cap of {spec.max_points} values reached: {why}")
    if wanted:
        chosen = wanted[:room]
        why = "; ".join(reason for _, reason in chosen).format(
            best=values([_best_whole(results) or 0]),
            top=values([max(i for i in results if i % 2 == 0)]))
        return Decision(tuple(i for i, _ in chosen), "searching",
                        f"{why}: trying {values([i for i, _ in chosen])}")
    return _refined(spec, results, room, values)


def best_index(results: Mapping[int, Result | None]) -> int | None:
    """The finished index with the lowest loss (the lower index on a tie)."""
    finished = {i: r.loss for i, r in results.items() if r is not None and r.finished}
    return min(finished, key=lambda i: (finished[i], i)) if finished else None


def _best_whole(results: Mapping[int, Result | None]) -> int | None:
    """:func:`best_index` over the whole steps: what the bracket is built around."""
    return best_index({i: r for i, r in results.items() if i % 2 == 0})


def _wanted(spec: SearchSpec, results: Mapping[int, Result | None]) -> list[tuple[int, str]]:
    """The whole-step indices still needed, each with its reason (``{best}`` and ``{top}`` to
    be filled in): the bracket's sides first, then the next step towards the edge."""
    whole = [i for i in results if i % 2 == 0]
    best = _best_whole(results)
    if best is None:
        return [(min(whole) - 2, "no value finished")]
    wanted = [(side, f"the best, {{best}}, has no value {word} it")
              for side, word in ((best - 2, "below"), (best + 2, "above"))
              if side not in results]
    diverged_above = any(r is not None and r.diverged for i, r in results.items() if i > best)
    top = max(whole)
    if spec.edge and not diverged_above and top + 2 not in (i for i, _ in wanted):
        wanted.append((top + 2, "nothing up to {top} diverged"))
    return wanted


def _refined(spec: SearchSpec, results: Mapping[int, Result | None], room: int,
             values: Callable[[list[int]], str]) -> Decision:
    """A bracketed series: the midpoint between the best and its better finished neighbour,
    once, when asked and within the cap."""
    best = _best_whole(results)
    edge = " and a diverging value above it" if spec.edge else ""
    settled = (f"settled: best {values([best_index(results)])}, with a value tried on each "
               f"side{edge}")
    if not spec.refine or any(i % 2 for i in results):
        return Decision((), "settled", settled)
    neighbours = [i for i in (best - 2, best + 2) if results[i].finished]
    if not neighbours:
        return Decision((), "settled", f"{settled} (no finished neighbour to refine towards)")
    if room <= 0:
        return Decision((), "settled", f"{settled} (the cap leaves no room to refine)")
    better = min(neighbours, key=lambda i: (results[i].loss, i))
    middle = (best + better) // 2
    return Decision((middle,), "searching", f"refining between {values([best])} and "
                    f"{values([better])}: trying {values([middle])}")
