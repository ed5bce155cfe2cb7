"""A sweep's summary: one row per point, what it varied and how it ended, as CSV and JSON.

With several seeds per point, a row gives the mean of each result over the point's finished
seeds with its spread (sample standard deviation, min, max), and two points differ *beyond noise*
only when their means are further apart than the sum of their standard deviations.
"""

import csv
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lmlab.atomic import atomic_path, atomic_write_json
from lmlab.config import flatten
from lmlab.experiments.compare import short_names
from lmlab.experiments.planning import Plan, Point
from lmlab.training.rundir import Run

RESULTS = ("final_val_loss", "best_val_loss", "val_bpb")
"""The results whose spread over seeds a row gives."""
COUNTS = ("steps", "tokens", "wall_time_s")


def summarize(plan: Plan) -> list[dict[str, Any]]:
    """One row per point: its varied values, then :meth:`Run.summary` of its one run (``pending``
    when the run has not started), or with several seeds :func:`over_seeds` of its runs."""
    names = short_names(plan.varied)
    rows = []
    for group, points in plan.groups().items():
        flat = flatten(points[0].config.model_dump(mode="json"))
        values = {names[key]: flat[key] for key in plan.varied}
        summaries = [_summary(point) for point in points]
        result = summaries[0] if len(points) == 1 else over_seeds(summaries)
        rows.append({"run": group, **values, **result})
    return rows


def _summary(point: Point) -> dict[str, Any]:
    if not point.run_dir.config.is_file():
        return {"run": point.name, "status": "pending"}
    return Run.load(point.run_dir.root).summary()


def over_seeds(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one point over its seeds (each a :meth:`Run.summary`) as one row: how many
    seeds, their statuses, and per result the mean over the finished seeds with ``_std``
    (sample standard deviation; None for a single finished seed, which shows no spread),
    ``_min`` and ``_max``; None where no seed finished.

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
    finished = [summary for summary in summaries if summary["status"] == "finished"]
    for key in RESULTS:
        values = [s[key] for s in finished if s.get(key) is not None and math.isfinite(s[key])]
        row[key] = statistics.fmean(values) if values else None
        row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else None
        row[f"{key}_min"] = min(values) if values else None
        row[f"{key}_max"] = max(values) if values else None
    for key in COUNTS:
        values = [summary[key] for summary in summaries if key in summary]
        row[key] = statistics.fmean(values) if values else None
    return row


def within_noise(a: dict[str, Any], b: dict[str, Any], key: str = "final_val_loss") -> bool:
    """Whether two rows' means of ``key`` differ by less than the sum of their seeds' standard
    deviations (rows without a spread are never within noise: one seed shows none).

    >>> within_noise({"final_val_loss": 2.00, "final_val_loss_std": 0.03},
    ...              {"final_val_loss": 2.05, "final_val_loss_std": 0.03})
    True
    """
    spread = (a.get(f"{key}_std") or 0.0) + (b.get(f"{key}_std") or 0.0)
    return abs(a[key] - b[key]) < spread


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
    """``summary.json`` and ``summary.csv`` in the sweep folder, written atomically."""
    atomic_write_json(root / "summary.json", rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(root / "summary.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
