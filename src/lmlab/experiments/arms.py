"""An ablation's arms against its baseline: each arm at every rate that the baseline also ran,
and each at its own best rate against the baseline at its own best.

A sweep that varies more than the learning rate (``model.norm`` and ``optim.lr_max``, say) has
one *series* of points per combination of the other values; the series closest to the sweep's
base config (the most of those values equal to the base's; the first in the sweep's order on a
tie) is the baseline, and every other series an arm. An arm that differs from the baseline in
one key is compared with it; one that differs in several keys of a grid (post-norm at 8 layers,
where the baseline is pre-norm at 4) is compared with each series that sets one of those keys
back to the baseline's value (pre-norm at 8 layers: the norm's effect at that depth; post-norm
at 4: the depth's effect on post-norm), or with the baseline when no such series ran. Each pair
is compared over its seeds by :func:`lmlab.experiments.stats.compare`.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from lmlab.experiments.compare import label, shown
from lmlab.experiments.stability import LR
from lmlab.experiments.stats import Comparison, compare
from lmlab.experiments.summary import best_of, seed_values

Points = Sequence[tuple[dict[str, Any], dict[str, Any]]]
"""A series' points as ``(flattened config, row over seeds)``."""


@dataclass(frozen=True)
class ArmComparison:
    """One row of the arms' table: ``arm`` at ``where`` against the series ``against``."""

    arm: str
    """The arm's values of the keys other than the rate, e.g. ``norm=none``."""
    where: str
    """``lr_max=0.003`` (both at that rate), or ``own best: 0.001 vs 0.003``."""
    comparison: Comparison
    against: str = ""
    """The series it is compared with: the baseline, or one a single key away from the arm."""


def baseline_and_arms(points: Points, varied: Sequence[str], base: dict[str, Any]
                      ) -> tuple[str, list[ArmComparison]] | None:
    """The baseline's label and each arm against its references (see the module's docstring),
    for ``points`` in the sweep's order; None unless something besides the rate varies (and two
    series exist)."""
    others = [key for key in varied if key != LR]
    series: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for config, row in points:
        series.setdefault(label(config, others), []).append((config, row))
    if not others or len(series) < 2:
        return None
    values = {name: {key: arm[0][0].get(key) for key in others} for name, arm in series.items()}
    baseline = max(series, key=lambda name: sum(values[name][key] == base.get(key)
                                                 for key in others))
    rows = []
    for name, arm in series.items():
        if name != baseline:
            for reference in _references(values, name, baseline):
                rows += _pair(name, arm, reference, series[reference], LR in varied)
    return baseline, rows


def _references(values: dict[str, dict[str, Any]], arm: str, baseline: str) -> list[str]:
    """The series that set one of the keys in which ``arm`` differs from the baseline back to
    the baseline's value and keep the rest; the baseline alone when none ran."""
    differing = [key for key, value in values[arm].items() if value != values[baseline][key]]
    wanted = [values[arm] | {key: values[baseline][key]} for key in differing]
    found = [name for name, their in values.items() if their in wanted]
    return found if len(differing) > 1 and found else [baseline]


def _pair(name: str, arm: Points, reference: str, theirs: Points, by_rate: bool
          ) -> list[ArmComparison]:
    """``arm`` against ``theirs`` at every rate both ran, then at each one's best rate."""
    rows = []
    best, their_best = best_of(arm, itemgetter(1)), best_of(theirs, itemgetter(1))
    for config, row in arm:
        same = next((them for mine, them in theirs if mine.get(LR) == config.get(LR)), None)
        if same is None:
            continue
        where = f"lr_max={shown(config.get(LR))}" if by_rate else "—"
        if by_rate and best and their_best and row is best[1] and same is their_best[1]:
            where += " (the best of both)"
        rows.append(ArmComparison(name, where, _versus(row, same, reference), reference))
    if by_rate and best and their_best and best[0][LR] != their_best[0][LR]:
        where = f"own best: {shown(best[0][LR])} vs {shown(their_best[0][LR])}"
        rows.append(ArmComparison(name, where, _versus(best[1], their_best[1], reference),
                                  reference))
    return rows


def _versus(arm: dict[str, Any], other: dict[str, Any], name: str) -> Comparison:
    return compare(seed_values(arm), seed_values(other), ("the arm", name))
