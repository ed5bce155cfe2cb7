"""A sweep's summary: one row per point, what it varied and how it ended, as CSV and JSON.

With several seeds per point, a row gives the mean of each result over the point's finished
seeds with its spread (sample standard deviation, min, max) and each seed's value by its seed
index (``train.seed``), so that two points compare seed by seed. Every row is compared with the
best (:func:`versus_best`: the difference, its 95% interval, a p-value and the verdict of
:func:`lmlab.experiments.stats.compare`).
"""

import csv
import json
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lmlab.atomic import atomic_path, atomic_write_json
from lmlab.config import flatten
from lmlab.experiments.compare import short_names
from lmlab.experiments.planning import Plan, Point
from lmlab.experiments.stats import Comparison, compare
from lmlab.training.rundir import Run

T = TypeVar("T")

RESULTS = ("final_val_loss", "best_val_loss", "val_bpb")
"""The results whose spread over seeds a row gives."""
COUNTS = ("steps", "tokens", "wall_time_s")


def summarize(plan: Plan) -> list[dict[str, Any]]:
    """One row per point: its varied values, then :meth:`Run.summary` of its one run (``pending``
    when the run has not started), or with several seeds :func:`over_seeds` of its runs; then
    its final val loss against the best row's (``vs_best``, ``vs_best_ci_low``... of
    :meth:`Comparison.fields`; the best row's verdict is ``best``)."""
    names = short_names(plan.varied)
    rows = []
    for group, points in plan.groups().items():
        flat = flatten(points[0].config.model_dump(mode="json"))
        values = {names[key]: flat[key] for key in plan.varied}
        result = (_summary(points[0]) if len(points) == 1 else
                  over_seeds([_summary(point) | {"seed": point.config.train.seed}
                              for point in points]))
        rows.append({"run": group, **values, **result})
    for row, comparison in zip(rows, versus_best(rows), strict=True):
        row.update(comparison.fields("vs_best") if comparison else {})
    return rows


def _summary(point: Point) -> dict[str, Any]:
    if not point.run_dir.config.is_file():
        return {"run": point.name, "status": "pending"}
    return Run.load(point.run_dir.root).summary()


def over_seeds(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one point over its seeds (each a :meth:`Run.summary`, with its ``seed``
    index where the caller knows it, else its position) as one row: how many seeds, their
    statuses, and per result the mean over the finished seeds with ``_std`` (sample standard
    deviation; None for a single finished seed, which shows no spread), ``_min``, ``_max`` and
    ``_seeds``, each seed's value by its index as a string, as JSON keys are (None for a seed
    that did not finish); None where no seed finished.

    >>> row = over_seeds([{"status": "finished", "final_val_loss": 2.0},
    ...                   {"status": "finished", "final_val_loss": 4.0},
    ...                   {"status": "diverged", "final_val_loss": 9.0}])
    >>> row["status"], row["final_val_loss"], row["final_val_loss_std"]
    ('2 finished, 1 diverged', 3.0, 1.4142135623730951)
    """
    statuses = Counter(summary["status"] for summary in summaries)
    row: dict[str, Any] = {
        "seeds": len(summaries),
        "status": (next(iter(statuses)) if len(statuses) == 1
                   else ", ".join(f"{count} {status}" for status, count in statuses.items())),
    }
    for key in RESULTS:
        results = [_finished(summary, key) for summary in summaries]
        values = [value for value in results if value is not None]
        row[key] = statistics.fmean(values) if values else None
        row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
        row[f"{key}_min"] = min(values) if values else None
        row[f"{key}_max"] = max(values) if values else None
        row[f"{key}_seeds"] = {_seed(summary, i): value for i, (summary, value)
                               in enumerate(zip(summaries, results, strict=True))}
    for key in COUNTS:
        values = [summary[key] for summary in summaries if key in summary]
        row[key] = statistics.fmean(values) if values else None
    return row


def _seed(summary: dict[str, Any], position: int) -> str:
    """A run's seed index as a JSON key: its ``seed``, or its position when it has none."""
    return str(position if summary.get("seed") is None else summary["seed"])


def _finished(summary: dict[str, Any], key: str) -> float | None:
    """A run's result when it finished with a finite one, else None."""
    value = summary.get(key)
    finite = value is not None and math.isfinite(value)
    return value if summary["status"] == "finished" and finite else None


def seed_values(row: dict[str, Any], key: str = "final_val_loss") -> dict[int, float | None]:
    """A row's ``key`` by seed index: a row over seeds keeps them (``<key>_seeds``); a one-run
    row is its one seed."""
    if f"{key}_seeds" in row:
        return {int(seed): value for seed, value in row[f"{key}_seeds"].items()}
    return {row.get("seed", 0): _finished(row, key)}


BEST = Comparison(None, None, None, None, None, None, "best")
"""The best row's place in :func:`versus_best`: nothing to compare it with."""


def versus_best(rows: Sequence[dict[str, Any]], key: str = "final_val_loss"
                ) -> list[Comparison | None]:
    """Each row against the one with the lowest mean ``key`` among those whose every seed
    finished (:func:`all_finished`; :func:`lmlab.experiments.stats.compare`, paired when both
    ran the same seeds); :data:`BEST` for the best row itself, None for a row without a result
    (and for every row when none finished all its seeds).

    >>> rows = [{"status": "finished", "final_val_loss": 2.0},
    ...         {"status": "finished", "final_val_loss": 2.5}]
    >>> [c.verdict for c in versus_best(rows)]
    ['best', '1 seed: no test']
    """
    best = best_of(rows, key=key)
    if best is None:
        return [None] * len(rows)
    return [BEST if row is best else
            compare(seed_values(row, key), seed_values(best, key), ("this point", "the best"))
            if row.get(key) is not None else None for row in rows]


def all_finished(row: dict[str, Any], key: str = "final_val_loss") -> bool:
    """Whether every seed of a row finished with a ``key``: the rows a best is chosen among, in
    the summary as in the search and the edge of stability (a rate that fails one seed in three
    is not one a student can use, whatever its other seeds reached).

    >>> all_finished({"status": "finished", "final_val_loss": 2.0})
    True
    >>> all_finished({"status": "2 finished, 1 diverged", "final_val_loss": 1.9})
    False
    """
    return row.get("status") == "finished" and row.get(key) is not None


def best_of(items: Sequence[T], row: Callable[[T], dict[str, Any]] = lambda item: item,
            key: str = "final_val_loss") -> T | None:
    """The item whose ``row`` has the lowest mean ``key`` among those whose every seed finished
    (:func:`all_finished`), the first on a tie; None when none did: the one way the summary, the
    edge of stability and the arms' own bests choose a best.

    >>> from operator import itemgetter
    >>> best_of([("a", {"status": "2 finished, 1 diverged", "final_val_loss": 1.0}),
    ...          ("b", {"status": "finished", "final_val_loss": 2.0})], itemgetter(1))
    ('b', {'status': 'finished', 'final_val_loss': 2.0})
    """
    complete = [item for item in items if all_finished(row(item), key)]
    return min(complete, key=lambda item: row(item)[key]) if complete else None


def versus_best_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The lines under a sweep's table with seeds: each point's final val loss against the best
    point's (:func:`versus_best`), with its 95% interval and verdict; none with one seed a
    point, where no test is possible.

    >>> rows = [over_seeds([{"status": "finished", "final_val_loss": v, "seed": s}
    ...                     for s, v in enumerate(values)]) | {"run": name}
    ...         for name, values in (("a", [2.0, 2.1, 2.05]), ("b", [2.5, 2.4, 2.6]))]
    >>> print("\\n".join(versus_best_lines(rows)))
    final val loss against the best point, a (difference, 95% interval):
      b: +0.4500 [+0.1214, +0.7786]: worse (p = 0.028, paired)
    """
    if max((row.get("seeds", 1) for row in rows), default=1) < 2:
        return []
    comparisons = versus_best(rows)
    best = [row["run"] for row, comparison in zip(rows, comparisons, strict=True)
            if comparison is BEST]
    return [f"final val loss against the best point, {best[0]} (difference, 95% interval):",
            *(f"  {row['run']}: " + ": ".join(filter(None, [comparison.interval(),
                                                           comparison.verdict]))
              for row, comparison in zip(rows, comparisons, strict=True)
              if comparison and comparison is not BEST)
            ] if best else []


def mean_spread(mean: float, std: float | None) -> str:
    """A result over seeds as ``mean ± std`` (the mean to 4 significant digits, its spread to 2),
    or the one finished seed's value marked as such: the one way every table and line writes it.

    >>> mean_spread(2.15, 0.07071), mean_spread(2.4, None)
    ('2.150 ± 0.071', '2.400 (1 seed)')
    """
    text = _significant(mean, 4)
    return f"{text} ± {_significant(std, 2)}" if std is not None else f"{text} (1 seed)"


def _significant(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, trailing zeros kept (``2.150``)."""
    return f"{value:#.{digits}g}".removesuffix(".")


NO_BPB = "—"
"""What a table shows for the bits per byte of a run whose evaluation was sampled
(``train.eval_batches > 0``): it has none, and :func:`no_bpb_note` under the table says why."""


def no_bpb(row: dict[str, Any], eval_batches: int) -> bool:
    """Whether ``row`` (a run's summary, or a row over seeds) has a validation loss but no bits
    per byte because its evaluations scored ``eval_batches`` sampled batches."""
    return (row.get("val_bpb") is None and row.get("final_val_loss") is not None
            and eval_batches > 0)


def no_bpb_note(rows: Iterable[tuple[dict[str, Any], int]]) -> str | None:
    """The footnote under a table of ``(row, its train.eval_batches)`` that says why a bits per
    byte is :data:`NO_BPB`; None when none is.

    >>> no_bpb_note([({"final_val_loss": 2.0, "val_bpb": None}, 50)])  # doctest: +ELLIPSIS
    '— bits/byte needs the whole validation file: ... (train.eval_batches=50; 0 scores all of it)'
    """
    sampled = sorted({batches for row, batches in rows if no_bpb(row, batches)})
    if not sampled:
        return None
    return (f"{NO_BPB} bits/byte needs the whole validation file: these runs scored a sample of "
            f"it (train.eval_batches={', '.join(map(str, sampled))}; 0 scores all of it)")


def write_summary(root: Path, rows: list[dict[str, Any]]) -> None:
    """``summary.json`` and ``summary.csv`` in the sweep folder, written atomically (in the
    CSV, a row's values by seed are a JSON object in one cell)."""
    atomic_write_json(root / "summary.json", rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(root / "summary.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: json.dumps(value) if isinstance(value, dict) else value
                          for key, value in row.items()} for row in rows)
