"""`lmlab runs`: the CLI over :func:`lmlab.experiments.runs_table.list_runs`."""

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.text import plural


class Status(StrEnum):
    """What a run's status column can say (``killed``: it says running, but no process holds
    its lock)."""

    finished = "finished"
    running = "running"
    diverged = "diverged"
    failed = "failed"
    interrupted = "interrupted"
    killed = "killed"
    damaged = "damaged"


@app.command("runs")
def runs_command(
    runs_dir: Annotated[Path, typer.Argument(
        help="Folder of runs and sweeps (searched below), or one run.")] = Path("runs"),
    sort: Annotated[str, typer.Option(
        help="Order by: new (newest first), name, status, step, tokens, best (best val loss), "
        "val/loss (last), val/bpb, tokens/s, wall_time, or a config key such as "
        "optim.lr_max; ascending, missing values last.")] = "new",
    reverse: Annotated[bool, typer.Option("--reverse", help="Reverse the order.")] = False,
    status: Annotated[list[Status] | None, typer.Option(
        metavar=f"[{'|'.join(Status)}]", show_default=False,
        help="Only runs with this status (repeat for several).")] = None,
    where: Annotated[list[str] | None, typer.Option(
        help="Only runs whose config has key=value, e.g. optim.lr_max=1e-3 or lr_max=1e-3 "
        "(repeat for several).", show_default=False)] = None,
    seeds: Annotated[bool, typer.Option(
        "--seeds", help="One row per seed, instead of one per point with mean ± std.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the rows as JSON (raw numbers, every config key that differs).")
    ] = False,
    watch: Annotated[float | None, typer.Option(
        min=0.5, help="Redraw the table every this many seconds, until Ctrl-C.",
        show_default=False)] = None,
    iterations: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Show every run under a folder in one table, newest first.

    A row gives the run's status (and why it diverged or failed; running means a live process
    holds its lock, killed that none does), its step and tokens, its best and last validation
    loss and bits per byte, its speed in tokens per second, its wall time, and the config keys
    that set the runs listed apart. The seeds of one point fold into one row with mean ± std
    over their finished seeds (--seeds shows each). It reads only the config, the status and
    the last and validation lines of each metrics.jsonl.

    \b
    Examples:
      lmlab runs runs/lr --sort val/loss
      lmlab runs runs --status diverged --where optim.lr_max=1e-2
      lmlab runs runs/lr --watch 10
    """
    from rich.console import Console

    from lmlab.errors import ConfigError
    from lmlab.experiments.runs_table import as_table, list_runs

    if watch is not None and as_json:
        raise ConfigError("--watch redraws the table: leave out --json")

    def load():
        return list_runs(runs_dir, statuses=[s.value for s in status or []], where=where or [],
                         fold_seeds=not seeds, sort=sort, reverse=reverse)

    def draw():
        table = load()
        if not table.rows:
            return _nothing(runs_dir, table.total)
        folded = " (seeds folded: --seeds shows each)" if any(
            row["seeds"] > 1 for row in table.rows) else ""
        runs = plural(table.total, "run")
        shown = f"{plural(len(table.rows), 'row')} of {runs}" if status or where else runs
        return as_table(table.rows, table.keys, f"{shown} under {runs_dir}{folded}")

    if as_json:
        from lmlab import jsonio

        typer.echo(jsonio.dumps(load().rows, indent=1))
        return
    console = Console()
    if not console.is_terminal:  # a pipe or a file: the whole table, not folded to 80 columns
        console = Console(width=400)
    if watch is None:
        console.print(draw())
        return
    _watch(console, draw, watch, iterations)


def _watch(console, draw, every_s: float, iterations: int | None) -> None:
    """Redraw in place every ``every_s`` seconds until Ctrl-C (or ``iterations`` draws)."""
    from rich.live import Live

    try:
        with Live(draw(), console=console, auto_refresh=False) as live:
            drawn = 1
            while iterations is None or drawn < iterations:
                time.sleep(every_s)
                live.update(draw(), refresh=True)
                drawn += 1
    except KeyboardInterrupt:
        pass


def _nothing(runs_dir: Path, total: int) -> str:
    """The line that stands for an empty table."""
    if total:
        return (f"none of the {plural(total, 'run')} under {runs_dir} match (lmlab runs "
                f"{runs_dir} lists all)")
    return (f"no runs under {runs_dir} yet (a run is a folder with config.json): "
            "lmlab train tinystories-cpu writes one to runs/tinystories-cpu")
