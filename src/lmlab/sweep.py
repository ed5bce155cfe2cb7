"""Sweeps: a base config and a grid (or list) of overrides become one run per point.

::

    base config + overrides ─► points (grid product × list) ─► runs/<sweep>/<point>/ ─► summary

Every point is planned and validated before the first run starts, so a typo in a grid key or a
bad value costs nothing. Runs go one after another in this process, or ``--parallel N`` at a time
as ``lmlab train`` subprocesses (each given its own GPU when several are visible); either way the
run directory is exactly what ``lmlab train`` writes, and a point that fails or diverges is a row
in the summary, not the end of the sweep. Sweeps are restartable because runs are: a finished or
diverged point is skipped, any other starts with ``run.resume=auto`` (from its checkpoint when it
has one).
"""

import csv
import itertools
import os
import queue
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from lmlab.atomic import atomic_path, atomic_write_json
from lmlab.config import Config, load_config
from lmlab.data import load_tokens
from lmlab.errors import ConfigError
from lmlab.runs import Run, flatten, format_value, short_names, varied_keys
from lmlab.train import train

LrScaling = Literal["sqrt", "linear"]
DONE = ("finished", "diverged")
"""Statuses a restarted sweep does not run again."""
RESERVED = ("run.name", "run.runs_dir", "run.resume")
"""Keys the sweep sets itself for each point."""


@dataclass
class Sweep:
    """What to sweep: everything ``lmlab sweep`` takes, from its options or a sweep file."""

    config: Path
    """The base training config (TOML)."""
    name: str | None = None
    """Folder under the base config's ``run.runs_dir`` (default: the config's file name)."""
    overrides: list[str] = field(default_factory=list)
    """``key=value`` words applied to every point."""
    grid: dict[str, list[str]] = field(default_factory=dict)
    """Each key's values; the points are their Cartesian product."""
    points: list[list[str]] = field(default_factory=list)
    """Explicit points, each a list of ``key=value`` words (crossed with the grid)."""
    fixed_tokens: bool = False
    """Keep the base config's token budget at every point (steps = tokens / tokens per step)."""
    lr_scaling: LrScaling | None = None
    """Rescale ``optim.lr_max`` with the tokens per step relative to the base config."""
    description: str = ""
    """What the sweep is for: the report shows it above the sweep's table."""

    @classmethod
    def from_file(cls, path: str | Path, variant: str | None = None) -> "Sweep":
        """Read a sweep TOML file (see ``configs/experiments/``); ``variant`` applies its
        ``[variant.NAME]`` table on top: its ``config``, ``fixed_tokens`` and ``lr_scaling``
        replace the top level's, its ``overrides`` are appended, its ``grid`` keys replace."""
        path = Path(path)
        raw = _read_toml(path)
        variants = raw.pop("variant", {})
        if variant is not None:
            if variant not in variants:
                raise ConfigError(f"{path} has no [variant.{variant}] table (it has: "
                                  f"{', '.join(variants) or 'none'})")
            extra = dict(variants[variant])
            raw["overrides"] = [*raw.get("overrides", []), *extra.pop("overrides", [])]
            raw["grid"] = {**raw.get("grid", {}), **extra.pop("grid", {})}
            raw.update(extra)
        known = {"config", "name", "overrides", "grid", "list", "fixed_tokens", "lr_scaling",
                 "description"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown sweep key(s) {', '.join(unknown)} "
                              f"(valid: {', '.join(sorted(known))}, variant)")
        if "config" not in raw:
            raise ConfigError(f"{path}: a sweep file needs config = \"<base config TOML>\"")
        return cls(
            config=path.parent / raw["config"],
            name=raw.get("name", path.stem),
            overrides=[str(word) for word in raw.get("overrides", [])],
            grid={key: [format_value(v) for v in _as_list(values, f"{path}: grid.{key}")]
                  for key, values in raw.get("grid", {}).items()},
            points=[[str(word) for word in _as_list(point, f"{path}: list")]
                    for point in raw.get("list", [])],
            fixed_tokens=raw.get("fixed_tokens", False),
            lr_scaling=raw.get("lr_scaling"),
            description=raw.get("description", ""),
        )


def merge(sweep: Sweep, **changes: Any) -> Sweep:
    """``sweep`` with command-line additions: grid keys replace, overrides and points append."""
    grid = {**sweep.grid, **changes.pop("grid", {})}
    overrides = [*sweep.overrides, *changes.pop("overrides", [])]
    points = [*sweep.points, *changes.pop("points", [])]
    return replace(sweep, grid=grid, overrides=overrides, points=points,
                   **{key: value for key, value in changes.items() if value is not None})


def is_sweep_file(path: str | Path) -> bool:
    """Whether a TOML file is a sweep file (it names a base ``config``) rather than a config."""
    return isinstance(_read_toml(Path(path)).get("config"), str)


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``--grid`` words to ``{key: values}``.

    >>> parse_grid(["optim.lr_max=1e-4,3e-4", "model.norm=rms,none"])
    {'optim.lr_max': ['1e-4', '3e-4'], 'model.norm': ['rms', 'none']}
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        values = [value.strip() for value in text.split(",")]
        if not sep or not key.strip() or not all(values):
            raise ConfigError(f"--grid {item!r} is not of the form section.key=v1,v2,...")
        if key.strip() in grid:
            raise ConfigError(f"--grid {key.strip()!r} is given twice")
        grid[key.strip()] = values
    return grid


def parse_points(items: Sequence[str]) -> list[list[str]]:
    """``--list`` words, each one point of space-separated overrides.

    >>> parse_points(["model.norm=none optim.lr_max=1e-3"])
    [['model.norm=none', 'optim.lr_max=1e-3']]
    """
    points = [shlex.split(item) for item in items]
    for item, point in zip(items, points, strict=True):
        if not point or not all("=" in word for word in point):
            raise ConfigError(f"--list {item!r} is not a list of section.key=value words")
    return points


@dataclass(frozen=True)
class Point:
    """One run of the sweep: its name and the override words that make its config."""

    name: str
    words: tuple[str, ...]
    config: Config


@dataclass
class Plan:
    """A validated sweep: where it writes, and every point's config."""

    sweep: Sweep
    root: Path
    base: Config
    points: list[Point]

    @property
    def varied(self) -> list[str]:
        """The config keys that differ between points: the columns of the summary."""
        return varied_keys([flatten(p.config.model_dump(mode="json")) for p in self.points])


def plan(sweep: Sweep) -> Plan:
    """Resolve and validate every point before anything runs.

    Raises :class:`ConfigError` for bad grid words, unknown keys or values at any point, points
    that would share a run directory, or a run directory left by a different config; and
    :class:`DataError` for token files that cannot feed a point's model.
    """
    if sweep.lr_scaling not in (None, "sqrt", "linear"):
        raise ConfigError(f"lr_scaling must be sqrt or linear, got {sweep.lr_scaling!r}")
    base = load_config(sweep.config, sweep.overrides)
    name = sweep.name or sweep.config.stem
    root = base.run.runs_dir / name
    varied = _combinations(sweep)
    for words in varied:
        for word in words:
            key = word.partition("=")[0].strip()
            if key in RESERVED:
                raise ConfigError(f"{key} cannot be swept: the sweep names each run")
            if sweep.fixed_tokens and key in ("train.max_steps", "train.max_tokens"):
                raise ConfigError(f"--fixed-tokens keeps the token budget, so {key} cannot vary")
    points = []
    for words in varied:
        point_name = _point_name(words)
        run_words = [f"run.runs_dir={root}", f"run.name={point_name}", "run.resume=auto"]
        config = load_config(sweep.config, [*sweep.overrides, *words, *run_words])
        derived = _derived_words(sweep, base, config)
        if derived:
            config = load_config(sweep.config, [*sweep.overrides, *words, *derived, *run_words])
        points.append(Point(point_name, (*sweep.overrides, *words, *derived, *run_words), config))
    _check_unique(points)
    for point in points:
        _check_same_config(point)
    _check_data(points)
    return Plan(sweep, root, base, points)


def run_sweep(plan: Plan, *, parallel: int = 1,
              on_event: Callable[[str], None] = lambda message: None) -> list[dict[str, Any]]:
    """Run every point not already done, ``parallel`` at a time; return the summary rows.

    ``summary.csv`` and ``summary.json`` are written to the sweep folder at the end, also when
    the sweep is interrupted (Ctrl-C stops the runs at a checkpoint; run again to continue).
    """
    atomic_write_json(plan.root / "sweep.json", _describe(plan))
    todo = [point for point in plan.points if _status(point) not in DONE]
    for point in plan.points:
        if point not in todo:
            on_event(f"{point.name}: {_status(point)}, skipped")
    try:
        if parallel == 1:
            _run_here(todo, on_event)
        else:
            _run_subprocesses(plan, todo, parallel, on_event)
    finally:  # also after Ctrl-C, which stops the runs at a checkpoint
        rows = summarize(plan)
        write_summary(plan.root, rows)
    return rows


def _run_here(points: Sequence[Point], on_event: Callable[[str], None]) -> None:
    """One run after another in this process (no interpreter start per run); Ctrl-C stops the
    current run at a checkpoint and the sweep with it."""
    for point in points:
        on_event(f"{point.name}: starting")
        try:
            status = train(point.config).status
        except Exception as exc:  # one failing point (say, out of memory) is a row, not the end
            status = f"failed ({type(exc).__name__}: {exc})"
        on_event(f"{point.name}: {status}")
        if status == "interrupted":
            raise KeyboardInterrupt


def _run_subprocesses(plan: Plan, points: Sequence[Point], parallel: int,
                      on_event: Callable[[str], None]) -> None:
    """``parallel`` runs at a time, each in its own process with its own worker environment."""
    slots: queue.SimpleQueue[dict[str, str]] = queue.SimpleQueue()
    for env in _worker_envs(parallel):
        slots.put(env)

    def work(point: Point) -> None:
        env = slots.get()
        try:
            on_event(f"{point.name}: starting")
            on_event(f"{point.name}: {_train_subprocess(plan, point, env)}")
        finally:
            slots.put(env)

    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        for future in [pool.submit(work, point) for point in points]:
            future.result()
    finally:  # on Ctrl-C the runs got the signal too and stop at a checkpoint: start no more
        pool.shutdown(wait=True, cancel_futures=True)


def summarize(plan: Plan) -> list[dict[str, Any]]:
    """One row per point: its varied values, then :meth:`Run.summary` (``pending`` when the run
    has not started)."""
    names = short_names(plan.varied)
    rows = []
    for point in plan.points:
        flat = flatten(point.config.model_dump(mode="json"))
        values = {names[key]: flat[key] for key in plan.varied}
        run_dir = point.config.run_dir
        summary = (Run.load(run_dir).summary() if (run_dir / "config.json").is_file()
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


def _combinations(sweep: Sweep) -> list[list[str]]:
    """Each point's override words: every explicit point crossed with the grid's product."""
    if not sweep.grid and not sweep.points:
        raise ConfigError("nothing to sweep: give --grid key=v1,v2 or --list 'key=v ...'")
    grid = [[f"{key}={value}" for value in values] for key, values in sweep.grid.items()]
    return [[*listed, *combo] for listed in sweep.points or [[]]
            for combo in itertools.product(*grid)]


def _point_name(words: Sequence[str]) -> str:
    """A run name from the varied values: ``lr_max-0.001__batch_size-32``."""
    keys = [word.partition("=")[0].strip() for word in words]
    names = short_names(keys)
    parts = [f"{names[key]}-{word.partition('=')[2].strip()}"
             for key, word in zip(keys, words, strict=True)]
    return re.sub(r"[^\w.\-]", "_", "__".join(parts))


def _derived_words(sweep: Sweep, base: Config, config: Config) -> list[str]:
    """The overrides that keep the token budget and rescale the learning rate."""
    words = []
    if sweep.fixed_tokens:
        budget = base.train.max_tokens or (
            base.max_steps * base.tokens_per_step if base.max_steps else None)
        if budget is None:
            raise ConfigError("--fixed-tokens needs train.max_tokens or train.max_steps in the "
                              "base config (a token budget to keep)")
        words += ["train.max_steps=none", f"train.max_tokens={budget}"]
    if sweep.lr_scaling is not None:
        ratio = config.tokens_per_step / base.tokens_per_step
        power = 0.5 if sweep.lr_scaling == "sqrt" else 1.0
        words.append(f"optim.lr_max={format_value(config.optim.lr_max * ratio ** power)}")
    return words


def _check_unique(points: Sequence[Point]) -> None:
    seen: set[str] = set()
    for point in points:
        if point.name in seen:
            raise ConfigError(f"two sweep points are both named {point.name!r}: a value is "
                              f"repeated in the grid or list")
        seen.add(point.name)


def _check_same_config(point: Point) -> None:
    """A run directory left by a sweep with other settings must not be resumed as this one."""
    path = point.config.run_dir / "config.json"
    if not path.is_file():
        return
    run = Run.load(point.config.run_dir)
    wanted = flatten(point.config.model_dump(mode="json"))
    differ = [f"{key}={format_value(run.config.get(key))} (now {format_value(value)})"
              for key, value in wanted.items()
              if not key.startswith("run.") and run.config.get(key) != value]
    if differ:
        raise ConfigError(f"{point.config.run_dir} was run with a different config "
                          f"({'; '.join(differ)}): choose another --name or remove it")


def _check_data(points: Sequence[Point]) -> None:
    """Every token file opens and fits its point's vocabulary and context."""
    checked: set[tuple] = set()
    for point in points:
        model, data = point.config.model, point.config.data
        for path in (data.train_path, data.valid_path):
            key = (str(path), model.vocab_size, model.context_length)
            if key not in checked:
                load_tokens(path, vocab_size=model.vocab_size,
                            context_length=model.context_length)
                checked.add(key)


def _status(point: Point) -> str:
    status_file = point.config.run_dir / "status"
    return status_file.read_text().strip() if status_file.is_file() else "pending"


def _train_subprocess(plan: Plan, point: Point, env: Mapping[str, str]) -> str:
    """``lmlab train`` for one point, its output appended to ``<run>/train.log``; the status it
    ended with (``failed`` when the process died without saying)."""
    run_dir = point.config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lmlab", "train", str(plan.sweep.config), *point.words,
               "--no-progress"]
    with open(run_dir / "train.log", "a", encoding="utf-8") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    status = _status(point)
    if code != 0 and status in ("running", "pending", "finished"):
        status = "failed"
    return status


def _worker_envs(parallel: int) -> list[dict[str, str]]:
    """One environment per worker: its own GPU when several are visible, else a fair share of
    the CPU threads (N runs with all threads each would fight over the cores)."""
    gpus = _visible_gpus()
    envs = []
    for slot in range(parallel):
        env = dict(os.environ)
        if len(gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        elif parallel > 1 and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
        envs.append(env)
    return envs


def _visible_gpus() -> list[str]:
    """The CUDA device ids this process may use."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def _describe(plan: Plan) -> dict[str, Any]:
    """``sweep.json``: the base config and each point's words, for the report and for people."""
    return {
        "name": plan.root.name,
        "description": plan.sweep.description,
        "config": str(plan.sweep.config),
        "overrides": plan.sweep.overrides,
        "base": plan.base.model_dump(mode="json"),
        "varied": plan.varied,
        "points": [{"name": p.name, "words": list(p.words)} for p in plan.points],
    }


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list, got {value!r}")
    return value
