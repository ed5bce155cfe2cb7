"""`lmlab sweep`: the CLI over :mod:`lmlab.experiments`: its words (``--grid``, ``--list``) read
into a :class:`~lmlab.experiments.sweep.Sweep`, and the summary shown as a rich table."""

import shlex
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from lmlab.cli.app import app
from lmlab.errors import ConfigError, DataError
from lmlab.text import plural

if TYPE_CHECKING:
    from lmlab.experiments.planning import Plan


class LrScaling(StrEnum):
    """``--lr-scaling``: the powers of :data:`lmlab.experiments.sweep.LrScaling` (a module that
    imports pydantic, so they are named again here; tests/test_cli_help.py checks they agree)."""

    sqrt = "sqrt"
    linear = "linear"


@app.command("sweep")
def sweep_command(
    config: Annotated[Path, typer.Argument(
        help="A training config or a sweep file (TOML), or a preset's name, e.g. lr_sweep "
        "(lmlab presets lists them).",
        show_default=False)],
    overrides: Annotated[list[str] | None, typer.Argument(
        help="Overrides for every point, as section.key=value.", show_default=False)] = None,
    grid: Annotated[list[str] | None, typer.Option(
        help="A key and its values, e.g. optim.lr_max=1e-4,3e-4,1e-3. Repeat for a grid: the "
        "points are the Cartesian product.", show_default=False)] = None,
    points: Annotated[list[str] | None, typer.Option(
        "--list", help="One explicit point as space-separated overrides, e.g. "
        "'model.norm=none optim.lr_max=1e-3'. Repeat for more (crossed with --grid).",
        show_default=False)] = None,
    name: Annotated[str | None, typer.Option(
        help="Sweep folder under run.runs_dir (default: the file name).",
        show_default=False)] = None,
    variant: Annotated[str | None, typer.Option(
        help="A sweep file's [variant.NAME] table to apply, e.g. cpu.",
        show_default=False)] = None,
    parallel: Annotated[int, typer.Option(
        min=1, help="Runs at a time (subprocesses; one per GPU when several are visible).")] = 1,
    fixed_tokens: Annotated[bool, typer.Option(
        "--fixed-tokens", help="Keep the base config's token budget at every point: steps = "
        "tokens / (batch_size x grad_accum x context_length).")] = False,
    lr_scaling: Annotated[LrScaling | None, typer.Option(
        help="Rescale optim.lr_max, and optim.lr_min with it, by (tokens per step / base tokens "
        "per step) to the power 1/2 (sqrt) or 1 (linear).", show_default=False)] = None,
    seeds: Annotated[int | None, typer.Option(
        min=1, help="Run every point with this many seeds (train.seed = the config's + 0, 1, "
        "...; one run directory each, <point>__seed-N): the summary gives each result's mean "
        "and spread over them (default: 1, or the sweep file's seeds).", show_default=False)
    ] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List the planned runs (points x seeds) with their model's "
        "parameters, token budget and time, what a re-run would skip, the cost of the runs left, "
        "and the token files still to make with the commands that make them; train nothing.")
    ] = False,
    measure: Annotated[bool, typer.Option(
        "--measure/--no-measure", help="With --dry-run: time a run's steps by training each "
        "model 3 steps here on random ids (not compiled), or take lmlab estimate's MFU figure "
        "instead (a run with a time budget costs its budget either way).")] = True,
    search: Annotated[str | None, typer.Option(
        help="Search a key on a log scale instead of listing it, e.g. optim.lr_max=3e-3:x3 (start "
        "3e-3, a factor 3 apart): per combination of the other varied keys, the start and its "
        "neighbours, then more a factor further out until the best has a value tried on each "
        "side.", show_default=False)] = None,
    search_cap: Annotated[int | None, typer.Option(
        min=3, help="The most values a search tries per series (default 7, or the sweep file's "
        "max_points): a series that reaches it says what it still lacks.", show_default=False)
    ] = None,
    search_edge: Annotated[bool, typer.Option(
        "--search-edge", help="The search also climbs until a value diverges (the edge of "
        "stability).")] = False,
    search_refine: Annotated[bool, typer.Option(
        "--search-refine", help="Once bracketed, the search tries the geometric midpoint of "
        "the best value and its better neighbour.")] = False,
    no_reuse: Annotated[bool, typer.Option(
        "--no-reuse", help="Train every point, also one whose run (every config key the same "
        "but the run's name and place and its checkpoint interval) already finished or diverged "
        "elsewhere under run.runs_dir; by default that run is copied instead (checkpoints "
        "hard-linked).")] = False,
) -> None:
    """Train one run per point of a grid or list of overrides.

    The runs go under runs/<sweep>/<point>/, and a summary is printed at the end (also in
    summary.csv and summary.json). Run the same command again to continue a stopped sweep:
    finished and diverged points are skipped, the others resume from their checkpoints. A point
    whose run another sweep already trained under run.runs_dir is copied, not trained again.

    \b
    Examples:
      lmlab sweep tinystories-cpu --grid optim.lr_max=1e-3,1e-2
      lmlab sweep lr_sweep --variant cpu --dry-run
      lmlab sweep tinystories-cpu --seeds 3 \\
          --list "model.norm=none optim.lr_max=1e-3"
    """
    from lmlab.experiments.planning import plan
    from lmlab.experiments.rounds import search_lines
    from lmlab.experiments.runner import run_sweep
    from lmlab.experiments.sweep import Sweep, is_sweep_file

    if is_sweep_file(config):
        base = Sweep.from_file(config, variant)
    elif variant is not None:
        raise ConfigError(f"--variant {variant}: {config} is a training config, not a sweep "
                          f"file")
    else:
        base = Sweep(config=config)
    sweep = base.merge(overrides=overrides or [], grid=parse_grid(grid or []),
                       points=parse_points(points or []), name=name,
                       fixed_tokens=fixed_tokens or None,
                       lr_scaling=lr_scaling.value if lr_scaling else None, seeds=seeds,
                       search=base.searched(search, search_cap, search_edge, search_refine))
    the_plan = plan(sweep, missing_ok=True)
    for line in the_plan.warnings:  # each once, for the points it names
        typer.echo(line, err=True)
    if dry_run:
        _list_runs(the_plan, measure, reuse=not no_reuse)
        return
    if the_plan.missing:
        files = ", ".join(str(path) for path in the_plan.missing)
        raise DataError(f"no such token file: {files} (add --dry-run to see the commands that "
                        f"make {'them' if len(the_plan.missing) > 1 else 'it'})")
    typer.echo(f"sweep {the_plan.root}: {plural(len(the_plan.points), 'run')}", err=True)
    try:
        rows = run_sweep(the_plan, parallel=parallel, reuse=not no_reuse,
                         on_event=lambda message: typer.echo(message, err=True))
    except KeyboardInterrupt:
        typer.echo("interrupted: run the same command again to continue the sweep (finished "
                   "runs are skipped; each other run resumes from its last checkpoint, or starts "
                   "again if it saved none)", err=True)
        raise typer.Exit(130) from None
    Console().print(_table(rows, the_plan))
    for line in search_lines(the_plan):
        typer.echo(line)
    from lmlab.experiments.summary import versus_best_lines

    for line in versus_best_lines(rows):
        typer.echo(line)


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


def _list_runs(the_plan: "Plan", measure: bool, reuse: bool) -> None:
    """``--dry-run``: every planned run with its model, budget and time, the cost of the runs
    left, and the missing token files with the commands that make them."""
    from lmlab.compute import duration
    from lmlab.experiments.cost import sweep_cost
    from lmlab.experiments.reuse import RunIndex
    from lmlab.experiments.rounds import replay

    replay(the_plan)  # a search: the round it is at
    cost = sweep_cost(the_plan, measure=measure,
                      reuse=RunIndex(the_plan.root.parent) if reuse else None,
                      on_measure=lambda message: typer.echo(f"{message}...", err=True))
    groups, seeds = the_plan.groups(), the_plan.sweep.seeds
    typer.echo(f"sweep {the_plan.root}: {plural(len(the_plan.points), 'run')} "
               f"({plural(len(groups), 'point')} x {plural(seeds, 'seed')}), "
               f"{len(cost.to_run)} to run")
    models = {f"{run.estimate.parameters:,} parameters: {run.estimate.counts()}"
              for run in cost.runs}
    if len(models) == 1:
        typer.echo(f"model: {models.pop()}")
    speeds: dict[int, Any] = {}
    for run in cost.to_run:
        if run.speed is not None:
            speeds.setdefault(id(run.speed), run)
    for run in speeds.values():
        whose = f" ({run.point.name}'s model)" if len(speeds) > 1 else ""
        typer.echo(f"time: {run.speed.step_s:.3g} s a step{whose}, {run.speed.how}")
        if run.speed.device == "cpu" and run.point.config.train.device != "cpu":
            typer.echo("      (no GPU here: --no-measure gives lmlab estimate's figure for an "
                       "H100)")
    if any(run.seconds is None for run in cost.to_run) and not measure:
        typer.echo("time: not estimated for a CPU run (its peak FLOP/s is not known): set "
                   "train.peak_flops, or leave out --no-measure to time it here")
    total_tokens, total_seconds, unknown = 0, 0.0, 0
    for run in cost.runs:
        config = run.point.config
        budget = []
        if config.max_steps is not None:
            tokens = config.max_steps * config.tokens_per_step
            budget.append(f"{plural(config.max_steps, 'step')}, {tokens:,} tokens")
        if config.train.time_budget_s is not None:
            budget.append(f"{config.train.time_budget_s:g} s of training")
        words = [" or ".join(budget)]
        if len(cost.runs) > 1 and len({r.estimate.counts() for r in cost.runs}) > 1:
            words.append(f"{run.estimate.parameters:,} parameters")
        if run.action == "reuse":
            words.append("a copy of the same run")
        elif run.action != "skip":
            left = " left" if run.action == "resume" else ""
            words.append(f"~{duration(run.seconds)}{left}" if run.seconds is not None
                         else "time unknown")
            total_tokens += run.tokens_left or 0
            total_seconds += run.seconds or 0.0
            unknown += run.seconds is None
        typer.echo(f"  {run.point.name}: {', '.join(words)}  [{run.status}: {run.action}]")
    runs = len(cost.to_run)
    cost_words = [f"{total_tokens:,} tokens"] if total_tokens else []
    unknown_words = f" (and {plural(unknown, 'run')} of unknown time)" if unknown else ""
    cost_words.append(f"~{duration(total_seconds)}{unknown_words}")
    typer.echo(f"in all: {', '.join(cost_words)} for the {plural(runs, 'run')} to go, one at "
               f"a time{_evaluations_note(cost)}")
    if cost.search is not None:
        typer.echo(cost.search.describe(the_plan.sweep.search, total_seconds))
    if cost.missing:
        typer.echo("missing token files: make them, then run the sweep")
        for path, commands in cost.missing.items():
            typer.echo(f"  {path}:")
            for command in commands:
                typer.echo(f"    {command}")


def _evaluations_note(cost) -> str:
    """Why the total leaves the evaluations out, when it does."""
    if not cost.to_run or all(run.evaluations is not None for run in cost.to_run):
        return ""
    if any(run.point.config.train.time_budget_s is not None and run.point.config.max_steps
           is None for run in cost.to_run):
        return " (evaluations not counted)"
    missing = [str(run.point.config.data.valid_path) for run in cost.to_run
               if run.evaluations is None]
    return f" (evaluations not counted: {missing[0]} is not made yet)"


SHOWN = {"run": "run", "status": "status", "final_val_loss": "val loss", "val_bpb": "bits/byte",
         "steps": "steps"}
"""The summary columns printed, with their headers: what fits 80 columns. The run's name already
holds its varied values; those, the best loss, token counts, wall time and the min/max over
seeds are in summary.csv and summary.json."""


def _table(rows: list[dict[str, Any]], the_plan: "Plan") -> Table:
    """The summary rows as a rich table that reads at 80 columns and in a log file: numbers are
    never cut, a long run name or status wraps instead; over seeds, a result is mean ± std; bits
    per byte that a sampled evaluation did not measure are a dash, with the reason below."""
    from lmlab.experiments.summary import NO_BPB, mean_spread, no_bpb, no_bpb_note

    seeds = max((row.get("seeds", 1) for row in rows), default=1)
    per_point = f", {seeds} seeds per point" if seeds > 1 else ""
    table = Table(title=f"{the_plan.root}{per_point} (all columns: summary.csv, summary.json)",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    present = {key for row in rows for key in row}
    columns = [key for key in SHOWN if key in present]
    groups = the_plan.groups()
    sampled = [groups[row["run"]][0].config.train.eval_batches for row in rows]
    cells = [[NO_BPB if column == "val_bpb" and no_bpb(row, batches) else
              mean_spread(row[column], row[f"{column}_std"])
              if f"{column}_std" in row and row[column] is not None else _cell(row.get(column))
              for column in columns] for row, batches in zip(rows, sampled, strict=True)]
    if "val_bpb" in columns:
        table.caption = no_bpb_note(zip(rows, sampled, strict=True))
        table.caption_justify = "left"
    for i, column in enumerate(columns):
        widest = max([len(SHOWN[column]), *(len(line[i]) for line in cells)])
        if column in ("run", "status"):
            table.add_column(SHOWN[column], overflow="fold", min_width=min(widest, 24))
        else:
            table.add_column(SHOWN[column], justify="right", no_wrap=True, min_width=widest)
    for line in cells:
        table.add_row(*line)
    return table


def _cell(value: Any) -> str:
    from lmlab.config import format_value

    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else format_value(value)
