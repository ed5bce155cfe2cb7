"""`lmlab plot`: the CLI over :mod:`lmlab.experiments.plot`."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.cli.options import Force


class XAxis(StrEnum):
    """The x axes of a learning curve: the keys of :data:`lmlab.training.rundir.X_KEYS` (which
    imports torch, so they are named again here; tests/test_cli_help.py checks they agree)."""

    step = "step"
    tokens = "tokens"
    wall_time = "wall_time"


class Panels(StrEnum):
    """How several metrics share a figure."""

    same = "same"
    separate = "separate"


@app.command("plot")
def plot_command(
    runs: Annotated[list[Path], typer.Argument(
        help="Run directories, or folders of them (a sweep: runs/lr_sweep).",
        show_default=False)],
    out: Annotated[Path, typer.Option(
        help="Figure to write: .png, .svg or .pdf. An existing file is written over only when "
        "lmlab plot wrote it (or with --force).")] = Path("curves.png"),
    x: Annotated[XAxis, typer.Option(
        help="x axis: optimizer steps, training tokens or seconds of training.")] = XAxis.step,
    metric: Annotated[list[str] | None, typer.Option(
        help="A metrics.jsonl key to plot (repeat for several; default train/loss and "
        "val/loss).", show_default=False)] = None,
    log: Annotated[bool, typer.Option("--log", help="Log-scale y axis.")] = False,
    smooth: Annotated[int, typer.Option(
        min=1, help="Trailing moving average of the train/ metrics over this many logged points "
        "(evaluations are not smoothed).")] = 1,
    panels: Annotated[Panels, typer.Option(
        help="same: every metric on one axes (train dashed); separate: one panel each.")
    ] = Panels.same,
    force: Force = False,
) -> None:
    """Overlay the learning curves of many runs in one figure.

    Each curve is labelled by what differs between the runs' configs. Works on runs that are
    still going; a diverged run ends in a cross. The figure names lmlab plot as its maker, and
    plotting again writes over it; any other file at --out is left alone unless --force.

    \b
    Examples:
      lmlab plot runs/lr --x tokens --out lr.png
      lmlab plot runs/lr/lr_max-0.001 runs/lr/lr_max-0.01 --metric val/loss --log
      lmlab plot runs/quickstart/tinystories-cpu --x wall_time --panels separate
    """
    from lmlab.experiments.figures import check_out, save_figure
    from lmlab.experiments.plot import DEFAULT_METRICS, load_runs, plot_runs

    check_out(out, force)
    figure = plot_runs(load_runs(runs), x=x.value, metrics=metric or DEFAULT_METRICS, log=log,
                       smooth=smooth, panels=panels.value)  # type: ignore[arg-type]
    typer.echo(f"wrote {save_figure(figure, out)}")
