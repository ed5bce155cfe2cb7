"""The edge of stability of a learning-rate sweep: the best peak rate, the smallest rate that
diverges, and how far apart they are.

The CS336 lesson is that the best rate sits close to the edge: on the 17M-parameter TinyStories
model on one GPU, 5e-3 was best and 7e-3 diverged (1.4x); at batch 256, 1e-2 was best and 3e-2
diverged (3x). A sweep that varies more than the rate (``model.norm`` too, say) has one edge per
combination of the other values: a *series*.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lmlab.experiments.compare import label, shown
from lmlab.experiments.summary import mean_spread, over_seeds
from lmlab.training.rundir import Run

LR = "optim.lr_max"
PUBLISHED = ("published on one GPU (TinyStories, 17M model): best 5e-3 with 7e-3 diverging "
             "(1.4x); at batch 256, best 1e-2 with 3e-2 diverging (3x)")


@dataclass(frozen=True)
class Edge:
    """One series of an lr sweep: each rate's row (:func:`over_seeds` of its runs), the best
    rate and the smallest one at which any seed diverged."""

    series: str
    """The other varied values, e.g. ``norm=none`` (empty when only the rate varies)."""
    rates: list[tuple[float, dict[str, Any]]]
    """``(lr, row)`` in increasing lr."""
    runs: dict[float, list[Run]]
    """Each rate's runs (its seeds)."""

    @property
    def best(self) -> tuple[float, dict[str, Any]] | None:
        """The rate with the lowest mean final validation loss over its finished seeds."""
        scored = [(lr, row) for lr, row in self.rates if row["final_val_loss"] is not None]
        return min(scored, key=lambda item: item[1]["final_val_loss"]) if scored else None

    @property
    def diverging(self) -> float | None:
        """The smallest rate at which a seed diverged."""
        return next((lr for lr, row in self.rates if "diverged" in row["status"]), None)

    def describe(self) -> str:
        """One line: best rate, smallest diverging rate and their ratio."""
        where = f" ({self.series})" if self.series else ""
        best = self.best
        if best is None:
            return f"Edge of stability{where}: no rate finished."
        lr, row = best
        loss = mean_spread(row["final_val_loss"], row["final_val_loss_std"])
        text = f"Edge of stability{where}: best lr {shown(lr)} (final val loss {loss}); "
        if self.diverging is None:
            return text + f"no rate up to {shown(self.rates[-1][0])} diverged."
        return (text + f"smallest diverging lr {shown(self.diverging)}: {self.diverging / lr:.3g}x "
                f"the best ({PUBLISHED}).")


def edges(points: Sequence[Sequence[Run]], varied: Sequence[str]) -> list[Edge]:
    """The edges of a sweep whose ``varied`` keys include ``optim.lr_max`` (none otherwise):
    ``points`` are the runs of each point over its seeds (:func:`compare.by_point`)."""
    if LR not in varied:
        return []
    others = [key for key in varied if key != LR]
    series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    runs: dict[str, dict[float, list[Run]]] = {}
    for point in points:
        config = point[0].config
        row = over_seeds([run.summary() for run in point])
        name = label(config, others)
        series.setdefault(name, []).append((config[LR], row))
        runs.setdefault(name, {})[config[LR]] = list(point)
    return [Edge(name, sorted(rates, key=lambda item: item[0]), runs[name])
            for name, rates in series.items()]
