"""What a planned sweep will cost before it runs (``lmlab sweep --dry-run``): the runs left to
train (a finished or diverged point is skipped, a stopped one resumes), each one's model and
time, and the token files still to make with the commands that make them; for a search, the
runs of its current round and the most its later rounds may add (its cap per series).

Time comes from a quick measurement on this machine (:func:`lmlab.compute.measure_speed`, once
per model and batch) or, without one, from ``lmlab estimate``'s MFU figure; a run with a time
budget costs its budget. Evaluations are counted when the validation file exists.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lmlab.compute import (
    Estimate,
    Speed,
    duration,
    estimate,
    estimated_speed,
    measure_speed,
    run_seconds,
)
from lmlab.config import Config
from lmlab.datasets import token_file_commands
from lmlab.experiments.planning import Plan, Point
from lmlab.experiments.reuse import RunIndex, source_for
from lmlab.experiments.rounds import decisions
from lmlab.experiments.runner import DONE
from lmlab.experiments.sweep import SearchSpec
from lmlab.text import plural
from lmlab.tokens import read_token_info
from lmlab.training.rundir import Run

FREE = ("skip", "reuse")
"""The actions that train nothing."""


@dataclass(frozen=True)
class RunCost:
    """One planned run: what happens to it, what it trains and how long what is left takes."""

    point: Point
    status: str
    """The run directory's status, or ``pending``."""
    action: str
    """``run``, ``resume`` (from its checkpoint), ``skip`` (finished or diverged) or ``reuse``
    (a copy of the same run elsewhere under the runs folder: :mod:`lmlab.experiments.reuse`)."""
    estimate: Estimate
    speed: Speed | None
    """None for a skipped run, one with a time budget alone, or no estimate."""
    fraction_done: float
    seconds: float | None
    """Wall seconds of what is left; None when not known."""
    evaluations: int | None
    """The evaluations ``seconds`` counts; None when they are not counted."""

    @property
    def tokens_left(self) -> int | None:
        """The training tokens still to go (None for a time budget alone)."""
        config = self.point.config
        if self.action in FREE:
            return 0
        if config.max_steps is None:
            return None
        return round(config.max_steps * config.tokens_per_step * (1 - self.fraction_done))


@dataclass(frozen=True)
class SweepCost:
    """Every run's cost, and the token files missing with the commands that make them."""

    runs: list[RunCost]
    missing: dict[Path, list[str]]
    """Each missing token file and its commands (a text or tokenizer made once is listed once,
    with the first file that needs it)."""

    search: "SearchCost | None" = None
    """What a search may add after the runs listed (None without a search)."""

    @property
    def to_run(self) -> list[RunCost]:
        return [run for run in self.runs if run.action not in FREE]


@dataclass(frozen=True)
class SearchCost:
    """The most a search may add after its current round: each series still searching may try
    values up to its cap, each with every seed."""

    cap: int
    series: int
    searching: int
    """The series not yet settled or capped."""
    more_runs: int
    more_seconds: float | None
    """Their time at the speed of each series' runs; None when one is not known."""

    def describe(self, spec: SearchSpec, seconds: float) -> str:
        """The cap per series and the most the later rounds may add, in runs and time (with
        ``seconds``, the runs listed, the bound of all of it)."""
        head = (f"search {spec.key} from {spec.start:g}, x{spec.factor:g}: at most {self.cap} "
                f"values a series (the cap), {plural(self.series, 'series', 'series')}")
        if not self.more_runs:
            return f"{head}: nothing more to add"
        more = ("" if self.more_seconds is None else f", ~{duration(self.more_seconds)}; at "
                f"most ~{duration(seconds + self.more_seconds)} in all")
        return (f"{head}: later rounds add at most {plural(self.more_runs, 'run')} for "
                f"{plural(self.searching, 'series', 'series')} still searching{more}")


def sweep_cost(plan: Plan, *, measure: bool = True, reuse: RunIndex | None = None,
               on_measure: Callable[[str], None] = lambda message: None) -> SweepCost:
    """The cost of ``plan`` (planned with ``missing_ok`` for its missing files to be listed).

    ``measure`` times each distinct model and batch here once (``on_measure`` hears which
    before the wait); without it the speed is ``lmlab estimate``'s. A point that the sweep will
    copy from ``reuse`` (the runs folder's index) costs nothing.
    """
    speeds: dict[str, Speed | None] = {}
    runs = []
    for point in plan.points:
        config = point.config
        status = point.run_dir.status or "pending"
        action = "skip" if status in DONE else (
            "resume" if point.run_dir.checkpoint.exists() else "run")
        if action == "run" and reuse is not None and source_for(reuse, point):
            action = "reuse"
        fraction = _fraction_done(point) if action == "resume" else 0.0
        speed = None
        if action not in FREE and config.max_steps is not None:
            key = _speed_key(config)
            if key not in speeds:
                speeds[key] = _measured(point, on_measure) if measure else estimated_speed(config)
            speed = speeds[key]
        seconds, evaluations = None, None
        if speed is not None:
            seconds, evaluations = run_seconds(config, speed, fraction_done=fraction,
                                               valid_tokens=_count(config.data.valid_path))
        elif action not in FREE and config.train.time_budget_s is not None:
            seconds = config.train.time_budget_s * (1 - fraction)
        runs.append(RunCost(point, status, action, estimate(config), speed, fraction,
                            0.0 if action in FREE else seconds, evaluations))
    return SweepCost(runs, _commands(plan.missing), _search_cost(plan, runs))


def _search_cost(plan: Plan, runs: list[RunCost]) -> SearchCost | None:
    """The upper bound of what the search adds: (cap - values planned) x seeds more runs for
    every series still searching, each as long as a whole run of that series."""
    spec = plan.sweep.search
    if spec is None:
        return None
    more_runs, more_seconds = 0, 0.0
    searching = 0
    for series, decision in decisions(plan).items():
        if decision.state in ("settled", "capped"):
            continue
        searching += 1
        more = (spec.max_points - len(plan.searched[series])) * plan.sweep.seeds
        timed = [run for run in runs if run.point.series == series and run.speed is not None]
        more_runs += more
        if more_seconds is not None and more and timed:
            whole, _ = run_seconds(timed[0].point.config, timed[0].speed,
                                   valid_tokens=_count(timed[0].point.config.data.valid_path))
            more_seconds += more * whole
        elif more:
            more_seconds = None
    return SearchCost(spec.max_points, len(plan.searched), searching, more_runs, more_seconds)


def _measured(point: Point, on_measure: Callable[[str], None]) -> Speed | None:
    """The speed measured here, or the estimate when the model does not fit (out of memory)."""
    on_measure(f"timing a few steps of {point.name}'s model here")
    try:
        return measure_speed(point.config)
    except torch.OutOfMemoryError:
        estimated = estimated_speed(point.config)
        return None if estimated is None else replace(
            estimated, how=f"{estimated.how} (out of memory when measured here)")


def _speed_key(config: Config) -> str:
    """What a step's time depends on: the model, the batch, the device and the optimizer."""
    train = config.train
    return json.dumps([config.model.model_dump(mode="json"), train.batch_size, train.grad_accum,
                       train.device, train.dtype, config.optim.optimizer], sort_keys=True)


def _fraction_done(point: Point) -> float:
    """How much of its budget a stopped run has spent, from its metrics log (the larger of its
    steps and its time, as the loop counts it)."""
    summary = Run.load(point.run_dir.root).summary()
    config = point.config
    budget = config.train.time_budget_s
    return max(summary["steps"] / config.max_steps if config.max_steps else 0.0,
               summary["wall_time_s"] / budget if budget else 0.0)


def _count(path: Path) -> int | None:
    """The tokens of a token file, or None when it is not made yet."""
    return read_token_info(path).count if Path(path).is_file() else None


def _commands(missing: dict[Path, int]) -> dict[Path, list[str]]:
    listed: set[str] = set()
    commands = {}
    for path, vocab_size in missing.items():
        commands[path] = [line for line in token_file_commands(path, vocab_size)
                          if line not in listed]
        listed.update(commands[path])
    return commands
