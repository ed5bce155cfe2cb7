"""A sweep's summary: one row per point, what it varied and how it ended, as CSV and JSON."""

import csv
from pathlib import Path
from typing import Any

from lmlab.atomic import atomic_path, atomic_write_json
from lmlab.config import flatten
from lmlab.experiments.compare import short_names
from lmlab.experiments.planning import Plan
from lmlab.training.rundir import Run


def summarize(plan: Plan) -> list[dict[str, Any]]:
    """One row per point: its varied values, then :meth:`Run.summary` (``pending`` when the run
    has not started)."""
    names = short_names(plan.varied)
    rows = []
    for point in plan.points:
        flat = flatten(point.config.model_dump(mode="json"))
        values = {names[key]: flat[key] for key in plan.varied}
        summary = (Run.load(point.run_dir.root).summary() if point.run_dir.config.is_file()
                   else {"run": point.name, "status": "pending"})
        rows.append({"run": point.name, **values, **summary})
    return rows


def write_summary(root: Path, rows: list[dict[str, Any]]) -> None:
    """``summary.json`` and ``summary.csv`` in the sweep folder, written atomically."""
    atomic_write_json(root / "summary.json", rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(root / "summary.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
