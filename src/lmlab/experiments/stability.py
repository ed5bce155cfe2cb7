"""The edge of stability of a learning-rate sweep: the best peak rate, the largest rate that
finished and the smallest that diverged, and how far apart they are; a best rate with nothing
tried on one side is reported as lying at the edge of the search, not as the optimum.

The CS336 lesson is that the best rate sits close to the edge: on the 17M-parameter TinyStories
model on one GPU, 5e-3 was best and 7e-3 diverged (1.4x); at batch 256, 1e-2 was best and 3e-2
diverged (3x). A sweep that varies more than the rate (``model.norm`` too, say) has one edge per
combination of the other values: a *series*.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from lmlab.experiments.compare import label, shown
from lmlab.experiments.summary import best_of, mean_spread, over_seeds
from lmlab.training.rundir import Run

LR = "optim.lr_max"
PUBLISHED = ("published on one GPU (TinyStories, 17M model): best 5e-3 with 7e-3 diverging "
             "(1.4x); at batch 256, best 1e-2 with 3e-2 diverging (3x)")


@dataclass(frozen=True)
class Edge:
    """One series of an lr sweep: each rate's row (:func:`over_seeds` of its runs), the best
    rate, the largest that finished and the smallest at which a seed diverged. A rate counts as
    finished when every seed finished, and as diverged when any seed did (as the search judges
    it, :mod:`lmlab.experiments.search`)."""

    series: str
    """The other varied values, e.g. ``norm=none`` (empty when only the rate varies)."""
    rates: list[tuple[float, dict[str, Any]]]
    """``(lr, row)`` in increasing lr."""
    runs: dict[float, list[Run]]
    """Each rate's runs (its seeds)."""
    values: dict[str, Any] = field(default_factory=dict)
    """The other varied keys' values (``{"train.batch_size": 16}``)."""

    @property
    def best(self) -> tuple[float, dict[str, Any]] | None:
        """The finished rate with the lowest mean final validation loss."""
        return best_of(self.rates, itemgetter(1))

    @property
    def diverging(self) -> float | None:
        """The smallest rate at which a seed diverged."""
        return next((lr for lr, row in self.rates if "diverged" in row["status"]), None)

    @property
    def largest_finished(self) -> float | None:
        """The largest rate at which every seed finished."""
        return max((lr for lr, row in self.rates if row["status"] == "finished"), default=None)

    @property
    def at_edge_of_search(self) -> str | None:
        """``below`` or ``above`` when no rate was tried on that side of the best: the optimum
        may lie further out, so the best is not called an optimum."""
        if self.best is None:
            return None
        lr = self.best[0]
        if lr == self.rates[0][0]:
            return "below"
        return "above" if lr == self.rates[-1][0] else None

    def describe(self) -> str:
        """One line: the best rate (at the edge of the search, when it is), the smallest
        diverging rate and its ratios to the best and to the largest rate that finished."""
        where = f" ({self.series})" if self.series else ""
        best = self.best
        if best is None:
            return f"Edge of stability{where}: no rate finished."
        lr, row = best
        loss = mean_spread(row["final_val_loss"], row["final_val_loss_std"])
        text = f"Edge of stability{where}: best lr {shown(lr)} (final val loss {loss})"
        if self.at_edge_of_search:
            text += (f", at the edge of the search (no rate {self.at_edge_of_search} it was "
                     "tried: the optimum may lie beyond)")
        if self.diverging is None:
            return text + f"; no rate up to {shown(self.rates[-1][0])} diverged."
        largest = self.largest_finished
        below = (f", {self.diverging / largest:.3g}x the largest that finished ({shown(largest)})"
                 if largest is not None and largest < self.diverging else "")
        return (text + f"; smallest diverging lr {shown(self.diverging)}: "
                f"{self.diverging / lr:.3g}x the best{below} ({PUBLISHED}).")


def edge_table(lr_edges: Sequence[Edge]) -> str:
    """The edges of a sweep's series as a Markdown table: best rate and its loss, the largest
    rate that finished, the smallest that diverged, their ratios, and whether the best lies at
    the edge of what was tried."""
    header = ["series", "best lr", "final val loss", "largest finished", "smallest diverged",
              "diverged / best", "diverged / largest finished", "best"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for edge in lr_edges:
        best, diverging, largest = edge.best, edge.diverging, edge.largest_finished
        lr = best[0] if best else None
        cells = [edge.series or "(all)", _rate(lr),
                 mean_spread(best[1]["final_val_loss"], best[1]["final_val_loss_std"])
                 if best else "no rate finished",
                 _rate(largest), _rate(diverging) if diverging else "none diverged",
                 f"{diverging / lr:.3g}x" if diverging and lr else "",
                 f"{diverging / largest:.3g}x" if diverging and largest else "",
                 f"at the edge of the search (nothing tried {edge.at_edge_of_search})"
                 if edge.at_edge_of_search else ("bracketed" if best else "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def series_key(lr_edges: Sequence[Edge]) -> str | None:
    """The one numeric key (a batch size) that sets several series apart, against which their
    edges can be drawn; None when there is no such key.

    >>> series_key([Edge("b=1", [], {}, {"train.batch_size": 1}),
    ...             Edge("b=4", [], {}, {"train.batch_size": 4})])
    'train.batch_size'
    """
    keys = {key for edge in lr_edges for key in edge.values}
    numeric = all(isinstance(value, int | float) and not isinstance(value, bool) and value > 0
                  for edge in lr_edges for value in edge.values.values())
    return keys.pop() if len(lr_edges) > 1 and len(keys) == 1 and numeric else None


def _rate(lr: float | None) -> str:
    return "" if lr is None else shown(lr)


def edges(points: Sequence[Sequence[Run]], varied: Sequence[str]) -> list[Edge]:
    """The edges of a sweep whose ``varied`` keys include ``optim.lr_max`` (none otherwise):
    ``points`` are the runs of each point over its seeds (:func:`compare.by_point`)."""
    if LR not in varied:
        return []
    others = [key for key in varied if key != LR]
    series: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    runs: dict[str, dict[float, list[Run]]] = {}
    values: dict[str, dict[str, Any]] = {}
    for point in points:
        config = point[0].config
        row = over_seeds([run.summary() for run in point])
        name = label(config, others)
        series.setdefault(name, []).append((config[LR], row))
        runs.setdefault(name, {})[config[LR]] = list(point)
        values[name] = {key: config.get(key) for key in others}
    return [Edge(name, sorted(rates, key=lambda item: item[0]), runs[name], values[name])
            for name, rates in series.items()]
