"""The runs table (``lmlab runs``): one row per run under a folder, or per point with its seeds
folded into one row (mean ± spread, as in the sweep summary), each row saying how the run
ended, how far it got and what sets it apart from the other runs listed.

It reads only what a row shows: the config, the status file, the lock (a live writer), and of
``metrics.jsonl`` the validation records and the last one. A damaged file is a row that says so,
never an exception.
"""

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from lmlab import jsonio
from lmlab.compute import duration
from lmlab.config import SEED, flatten, parse_value
from lmlab.errors import DataError
from lmlab.experiments.compare import by_point, point_label, short_names, shown, varied_keys
from lmlab.experiments.summary import mean_spread, over_seeds
from lmlab.text import plural
from lmlab.training.lock import LOCK_FILE, held_by
from lmlab.training.rundir import Run, RunDir, find_runs

SORT_ALIASES = {"new": "updated", "name": "run", "step": "steps", "val/loss": "final_val_loss",
                "best": "best_val_loss", "val/bpb": "val_bpb", "tokens/s": "tokens_per_s",
                "wall_time": "wall_time_s"}
"""``--sort`` words besides the rows' own fields and the config keys."""
NUMBERS = ("steps", "tokens", "best_val_loss", "final_val_loss", "val_bpb", "tokens_per_s",
           "wall_time_s", "updated")
"""The fields sorted as numbers; ``updated`` (newest first) alone in descending order."""


@dataclass
class Entry:
    """One run directory read for the table: the run (with only the records a row needs), its
    row of results, and when it last wrote."""

    run: Run
    row: dict[str, Any]
    updated: float


def read_entry(path: Path, root: Path) -> Entry:
    """The run at ``path``, named by its place under ``root``: status (a live writer's lock, a
    dead one's), the divergence or failure reason, and :meth:`Run.summary` of its validation
    records and last record, plus its mean tokens per second. A file it cannot read is said in
    the row."""
    run_dir = RunDir(path)
    name = path.relative_to(root).as_posix() if path != root else path.name
    records, damaged = _needed_records(run_dir.metrics)
    status, reason = _status(run_dir)
    try:
        config = flatten(run_dir.read_config())
    except DataError as exc:
        config, status, reason = {}, "damaged", str(exc)
    run = Run(path, config, status, records, reason)
    row = run.summary() | {"run": name, "seed": config.get(SEED), "seeds": 1,
                           "tokens_per_s": _tokens_per_s(records), "reason": reason,
                           "damaged_lines": damaged}
    stamps = [file.stat().st_mtime for file in (run_dir.metrics, run_dir.status_file,
                                                run_dir.config) if file.exists()]
    return Entry(run, row, max(stamps, default=0.0))


def _needed_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Of a metrics log, in order: every record with a validation metric and the last complete
    record; with how many of the lines it read were damaged (cut short by a kill, or garbled)."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return [], 0
    records: dict[int, dict[str, Any]] = {}
    damaged: set[int] = set()

    def parse(i: int) -> bool:
        if i not in records and i not in damaged and lines[i].strip():
            try:
                records[i] = jsonio.metric_record(lines[i].decode("utf-8"))
            except (ValueError, AttributeError):  # cut short, garbled, not UTF-8, not an object
                damaged.add(i)
        return i in records

    for i, line in enumerate(lines):
        if b'"val/' in line:
            parse(i)
    for i in reversed(range(len(lines))):
        if parse(i):
            break
    return [records[i] for i in sorted(records)], len(damaged)


def _status(run_dir: RunDir) -> tuple[str, str | None]:
    """How the run stands: its status file, except that ``running`` is ``killed`` when its lock
    is there but held by no process (a kill or a power cut left no status), and the reason:
    the divergence rule, a live writer's pid, or a failed sweep point's last ``error:`` line."""
    try:
        status, reason = run_dir.status or "pending", run_dir.reason
    except (OSError, UnicodeDecodeError):
        return "damaged", f"{run_dir.status_file} cannot be read"
    if status == "running":
        writer = held_by(run_dir.root)
        if writer:
            return status, writer
        if (run_dir.root / LOCK_FILE).exists():
            return "killed", "no process holds its lock: it stopped without saying why (resume it)"
    if status == "failed" and reason is None:
        reason = _last_error(run_dir.log)
    return status, reason


def _last_error(log: Path) -> str | None:
    """The last ``error:`` line of a sweep point's ``train.log`` (its end only is read)."""
    try:
        with open(log, "rb") as file:
            file.seek(max(file.seek(0, 2) - 4096, 0))
            tail = file.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return None
    errors = [line.removeprefix("error: ") for line in tail if line.startswith("error: ")]
    return errors[-1] if errors else None


def _tokens_per_s(records: Sequence[dict[str, Any]]) -> float | None:
    """Tokens over training seconds at the last record (evaluation time left out)."""
    last = records[-1] if records else {}
    seconds = last.get("train_time_s") or last.get("wall_time_s")
    return last["tokens"] / seconds if seconds and "tokens" in last else None


def read_entries(root: str | Path) -> list[Entry]:
    """Every run at or below ``root``; a :class:`DataError` when ``root`` is not a folder."""
    root = Path(root)
    if not root.is_dir():
        what = "a file" if root.exists() else "no such folder"
        raise DataError(f"{root} is not a folder of runs ({what}): give the folder that holds "
                        "them (run.runs_dir, runs/ by default), e.g. lmlab runs runs")
    return [read_entry(path, root) for path in find_runs(root)]


@dataclass
class RunsTable:
    """What ``lmlab runs`` shows: the rows, the config keys that set them apart, and how many
    runs the folder holds before any filter."""

    rows: list[dict[str, Any]]
    keys: list[str]
    total: int


def list_runs(root: str | Path, *, statuses: Sequence[str] = (), where: Sequence[str] = (),
              fold_seeds: bool = True, sort: str = "new", reverse: bool = False) -> RunsTable:
    """The runs table of the folder ``root``: its runs read (:func:`read_entries`), filtered
    (:func:`select`), folded and sorted (:func:`table_rows`)."""
    entries = read_entries(root)
    rows, keys = table_rows(select(entries, statuses, where), fold_seeds=fold_seeds, sort=sort,
                            reverse=reverse)
    return RunsTable(rows, keys, len(entries))


def select(entries: Sequence[Entry], statuses: Sequence[str] = (),
           where: Sequence[str] = ()) -> list[Entry]:
    """The entries whose status is one of ``statuses`` (all when empty) and whose config holds
    every ``key=value`` of ``where`` (a dotted key, or its last part when that is unique)."""
    known = sorted({key for entry in entries for key in entry.run.config})
    wanted = [_condition(word, known) for word in where]
    return [entry for entry in entries
            if (not statuses or entry.run.status in statuses)
            and all(entry.run.config.get(key) == value for key, value in wanted)]


def _condition(word: str, known: Sequence[str]) -> tuple[str, Any]:
    key, equals, text = word.partition("=")
    if not equals:
        raise DataError(f"--where {word!r} is not key=value: e.g. --where optim.lr_max=1e-3")
    return config_key(key, known, "--where"), parse_value(text)


def config_key(key: str, known: Sequence[str], option: str) -> str:
    """``key`` as a dotted config key of the runs: itself, or the one key it is the last part of;
    a :class:`DataError` that names the ``option`` and what it takes otherwise."""
    if key in known:
        return key
    matches = [name for name in known if name.rpartition(".")[2] == key]
    if len(matches) == 1:
        return matches[0]
    hint = (f"it is the last part of {', '.join(matches)}: name one" if matches else
            "give a dotted key of their config.json, e.g. optim.lr_max")
    if option == "--sort":
        hint += f", or one of {', '.join(SORT_ALIASES)}"
    raise DataError(f"{option} {key}: not a config key of these runs; {hint}")


def table_rows(entries: Sequence[Entry], *, fold_seeds: bool = True,
               sort: str = "new", reverse: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of the table and the config keys that set the listed runs apart (the seed aside
    when seeds fold). Each row carries ``config``, its values of those keys; a point's seeds
    fold into :func:`~lmlab.experiments.summary.over_seeds` of their rows."""
    readable = [entry for entry in entries if entry.run.config]
    keys = varied_keys([entry.run.config for entry in readable])
    groups = _groups(entries, readable) if fold_seeds else [[entry] for entry in entries]
    if fold_seeds and any(len(group) > 1 for group in groups):
        keys = [key for key in keys if key != SEED]
    rows = [_row(group, keys) for group in groups]
    known = sorted({key for entry in readable for key in entry.run.config})
    return _sorted(rows, sort, reverse, known), keys


def _groups(entries: Sequence[Entry], readable: Sequence[Entry]) -> list[list[Entry]]:
    """The entries by point (:func:`~lmlab.experiments.compare.by_point`) within each folder (a
    sweep's seeds fold; the same run reused by another sweep stays that sweep's), a damaged
    one alone."""
    of_run = {id(entry.run): entry for entry in readable}
    folders: dict[Path, list[Run]] = {}
    for entry in readable:
        folders.setdefault(entry.run.path.parent, []).append(entry.run)
    groups = [[of_run[id(run)] for run in point]
              for runs in folders.values() for point in by_point(runs)]
    return groups + [[entry] for entry in entries if not entry.run.config]


def _row(group: Sequence[Entry], keys: Sequence[str]) -> dict[str, Any]:
    first = group[0]
    config = {key: first.run.config.get(key) for key in keys}
    updated = max(entry.updated for entry in group)
    if len(group) == 1:
        return first.row | {"config": config, "updated": updated}
    speeds = [e.row["tokens_per_s"] for e in group if e.row["tokens_per_s"] is not None]
    folded = over_seeds([entry.row for entry in group])  # each seed's results by its seed
    name = (Path(first.row["run"]).parent / point_label([entry.run for entry in group]))
    reasons = [f"{e.run.name}: {e.row['reason']}" for e in group  # who runs a seed: --seeds
               if e.row["reason"] and e.row["status"] != "running"]
    return folded | {
        "run": name.as_posix(), "runs": [entry.row["run"] for entry in group],
        "tokens_per_s": statistics.fmean(speeds) if speeds else None,
        "reason": "; ".join(reasons) or None,
        "damaged_lines": sum(entry.row["damaged_lines"] for entry in group),
        "config": config, "updated": updated}


def _sorted(rows: list[dict[str, Any]], sort: str, reverse: bool,
            known: Sequence[str]) -> list[dict[str, Any]]:
    """``rows`` newest first, then (a stable sort) by a field, an alias of one
    (:data:`SORT_ALIASES`) or a config key of ``known``: ascending, missing values last."""
    rows = sorted(rows, key=lambda row: row["updated"], reverse=True)
    field = SORT_ALIASES.get(sort, sort)
    if field == "updated" or not rows:
        return rows[::-1] if reverse else rows
    if field in (*NUMBERS, "run", "status"):
        def value(row: dict[str, Any]) -> Any:
            return row.get(field)
    else:
        key = config_key(sort, known, "--sort")

        def value(row: dict[str, Any]) -> Any:
            return row["config"].get(key)
    present = [row for row in rows if _present(value(row))]
    present.sort(key=lambda row: _order(value(row)), reverse=reverse)
    return present + [row for row in rows if not _present(value(row))]


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _order(value: Any) -> tuple[int, Any]:
    """Numbers before text, so that a key with values of both kinds still sorts."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return (0, value) if number else (1, json.dumps(value, default=str))


STYLES = {"finished": "green", "running": "cyan", "interrupted": "yellow", "pending": "dim"}
"""The colour of each status in the table; every other status (diverged, failed, killed,
damaged) is red."""


def as_table(rows: Sequence[dict[str, Any]], keys: Sequence[str], title: str) -> Table:
    """The rows as a rich table: the results, then a column per varied config key."""
    seeds = any(row["seeds"] > 1 for row in rows)
    table = Table(title=title, title_justify="left")
    table.add_column("run", overflow="fold")
    if seeds:
        table.add_column("seeds", justify="right")
    table.add_column("status", overflow="fold")
    for header in ("step", "tokens", "best val", "last val", "bpb", "tok/s", "time"):
        table.add_column(header, justify="right", no_wrap=True)
    names = short_names(keys)
    for key in keys:
        table.add_column(names[key], justify="right", no_wrap=True)
    for row in rows:
        seconds = row["wall_time_s"]
        time = duration(seconds) if seconds is not None else "—"
        table.add_row(row["run"], *([str(row["seeds"])] if seeds else []), _status_cell(row),
                      _count(row["steps"], plain=True), _count(row["tokens"]),
                      *(_result(row, key) for key in ("best_val_loss", "final_val_loss",
                                                      "val_bpb")),
                      _count(row["tokens_per_s"]), time,
                      *(shown(row["config"][key]) for key in keys))
    return table


def _status_cell(row: dict[str, Any]) -> str:
    status = row["status"]
    words = status.split(", ")[-1].split()[-1]  # "2 finished, 1 diverged": the last status
    text = f"[{STYLES.get(words, 'red')}]{escape(status)}[/]"
    if row["reason"]:
        reason = row["reason"]  # the table shows its start; --json all of it
        text += f": {escape(reason if len(reason) <= 80 else reason[:79].rstrip() + '…')}"
    if row["damaged_lines"]:
        text += f" [dim]({plural(row['damaged_lines'], 'damaged metrics line')} skipped)[/]"
    return text


def _result(row: dict[str, Any], key: str) -> str:
    """A loss or bits per byte: ``mean ± std`` over a folded point's finished seeds
    (:func:`~lmlab.experiments.summary.mean_spread`), else the run's own value."""
    value = row.get(key)
    if value is None:
        return "—"
    if row["seeds"] > 1:
        return mean_spread(value, row.get(f"{key}_std"))
    return f"{value:#.4g}".removesuffix(".")


def _count(value: float | None, plain: bool = False) -> str:
    """``1,234`` (``plain``), else ``12.3k`` / ``4.56M``: a count or a rate at a glance."""
    if value is None:
        return "—"
    if plain or value < 1000:
        return f"{round(value):,}"
    size, unit = next((size, unit) for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k"))
                      if value >= size)
    return f"{value / size:.3g}{unit}"
