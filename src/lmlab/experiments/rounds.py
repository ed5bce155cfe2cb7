"""The rounds of a search: what each series' finished runs decide (:func:`decisions`), and the
plan grown by the values they call for (:func:`next_round`).

The runner trains a round, then asks for the next; a dry run and a re-run replay the same
rounds from the same finished runs, so a finished search trains nothing new.
"""

import math
from collections.abc import Callable, Sequence

from lmlab.experiments.planning import Plan, Point, lr_scale, plan
from lmlab.experiments.search import Decision, Result, decide
from lmlab.training.rundir import Run


def next_round(current: Plan, on_event: Callable[[str], None] = lambda message: None
               ) -> list[Point]:
    """The points a search adds next from its finished runs (none without a search, or when
    every series is settled, capped or waits on a run that did not end); ``current`` grows by
    them in place. ``on_event`` hears each series' decision."""
    if current.sweep.search is None:
        return []
    added: dict[str, list[int]] = {}
    for line, (series, decision) in zip(search_lines(current), decisions(current).items(),
                                        strict=True):
        on_event(line)
        if decision.add:
            added[series] = [*current.searched[series], *decision.add]
    if not added:
        return []
    grown = plan(current.sweep, missing_ok=True, searched={**current.searched, **added})
    known = {point.name for point in current.points}
    current.points[:] = grown.points
    current.searched, current.missing = grown.searched, grown.missing
    return [point for point in grown.points if point.name not in known]


def decisions(current: Plan) -> dict[str, Decision]:
    """What the search decides for each series from the runs planned so far."""
    spec = current.sweep.search
    assert spec is not None
    found: dict[str, Decision] = {}
    for series, indices in current.searched.items():
        runs = {index: [p for p in current.points if (p.series, p.index) == (series, index)]
                for index in indices}
        scale = (lr_scale(current.sweep, current.base, runs[indices[0]][0].config)
                 if spec.key == "optim.lr_max" else 1.0)
        found[series] = decide(spec, {i: _result(points) for i, points in runs.items()},
                               scale=scale)
    return found


def _result(points: Sequence[Point]) -> Result | None:
    """How one searched value ended over its seeds; None while a seed has not ended."""
    statuses = [point.run_dir.status for point in points]
    if "diverged" in statuses:
        return Result(None, diverged=True)
    if any(status != "finished" for status in statuses):
        return None
    losses = [Run.load(point.run_dir.root).summary()["final_val_loss"] for point in points]
    finite = [loss for loss in losses if loss is not None and math.isfinite(loss)]
    return Result(sum(finite) / len(finite) if len(finite) == len(losses) else None, False)


def replay(current: Plan) -> Plan:
    """``current`` grown round by round while every run planned has ended: the round a search
    is at (what ``--dry-run`` lists), reached without training."""
    while (all(point.run_dir.status in ("finished", "diverged") for point in current.points)
           and next_round(current)):
        pass
    return current


def search_lines(current: Plan) -> list[str]:
    """How each series of a search stands (settled, capped or waiting on a run), a line each;
    none without a search."""
    if current.sweep.search is None:
        return []
    return [f"search{f' ({series})' if series else ''}: {decision.note}"
            for series, decision in decisions(current).items()]
