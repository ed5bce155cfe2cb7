"""An ablation's arms against its baseline: each arm at every rate that the baseline also ran,
and each at its own best rate against the baseline at its own best.

A sweep that varies more than the learning rate (``model.norm`` and ``optim.lr_max``, say) has
one *series* of points per combination of the other values; the series closest to the sweep's
base config (the most of those values equal to the base's; the first in the sweep's order on a
tie) is the baseline, and every other series an arm. Each pair is compared over its seeds by
:func:`lmlab.experiments.stats.compare`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lmlab.experiments.compare import label, shown
from lmlab.experiments.stability import LR
from lmlab.experiments.stats import Comparison, compare
from lmlab.experiments.summary import seed_values


@dataclass(frozen=True)
class ArmComparison:
    """One row of the arms' table: ``arm`` at ``where`` against the baseline."""

    arm: str
    """The arm's values of the keys other than the rate, e.g. ``norm=none``."""
    where: str
    """``lr_max=0.003`` (both at that rate), or ``own best: 0.001 vs 0.003``."""
    comparison: Comparison


def baseline_and_arms(points: Sequence[tuple[dict[str, Any], dict[str, Any]]],
                      varied: Sequence[str], base: dict[str, Any]
                      ) -> tuple[str, list[ArmComparison]] | None:
    """The baseline's label and each arm against it, for ``points`` given as ``(flattened
    config, row over seeds)`` in the sweep's order; None unless something besides the rate
    varies (and two series exist)."""
    others = [key for key in varied if key != LR]
    series: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for config, row in points:
        series.setdefault(label(config, others), []).append((config, row))
    if not others or len(series) < 2:
        return None
    baseline = max(series, key=lambda name: sum(series[name][0][0].get(key) == base.get(key)
                                                 for key in others))
    rows = []
    their_best = _best(series[baseline])
    for name, arm in series.items():
        if name == baseline:
            continue
        best = _best(arm)
        for config, row in arm:
            same = next((theirs for mine, theirs in series[baseline]
                         if mine.get(LR) == config.get(LR)), None)
            if same is None:
                continue
            where = f"lr_max={shown(config.get(LR))}" if LR in varied else "—"
            if LR in varied and best and their_best and row is best[1] and same is their_best[1]:
                where += " (the best of both)"
            rows.append(ArmComparison(name, where, _versus(row, same)))
        if LR in varied and best and their_best and best[0][LR] != their_best[0][LR]:
            where = f"own best: {shown(best[0][LR])} vs {shown(their_best[0][LR])}"
            rows.append(ArmComparison(name, where, _versus(best[1], their_best[1])))
    return baseline, rows


def _best(points: Sequence[tuple[dict[str, Any], dict[str, Any]]]
          ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The point with the lowest mean final validation loss (None when none finished)."""
    scored = [point for point in points if point[1].get("final_val_loss") is not None]
    return min(scored, key=lambda point: point[1]["final_val_loss"]) if scored else None


def _versus(arm: dict[str, Any], baseline: dict[str, Any]) -> Comparison:
    return compare(seed_values(arm), seed_values(baseline), ("the arm", "the baseline"))
