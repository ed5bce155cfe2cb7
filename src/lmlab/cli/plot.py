"""`lmlab plot`: the CLI over :mod:`lmlab.experiments.plot`."""

from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.errors import ConfigError


@app.command("plot")
def plot_command(
    runs: Annotated[list[Path], typer.Argument(
        help="Run directories, or folders of them (a sweep: runs/lr_sweep).",
        show_default=False)],
    out: Annotated[Path, typer.Option(help="Figure to write: .png, .svg or .pdf.")] = Path(
        "curves.png"),
    x: Annotated[str, typer.Option(help="x axis: step, tokens or wall_time.")] = "step",
    metric: Annotated[list[str] | None, typer.Option(
        help="A metrics.jsonl key to plot (repeat for several; default train/loss and "
        "val/loss).", show_default=False)] = None,
    log: Annotated[bool, typer.Option("--log", help="Log-scale y axis.")] = False,
    smooth: Annotated[int, typer.Option(
        min=1, help="Trailing moving average of the train/ metrics over this many logged points "
        "(evaluations are not smoothed).")] = 1,
    panels: Annotated[str, typer.Option(
        help="same: every metric on one axes (train dashed); separate: one panel each.")
    ] = "same",
) -> None:
    """Overlay the learning curves of many runs in one figure.

    Each curve is labelled by what differs between the runs' configs. Works on runs that are
    still going; a diverged run ends in a cross."""
    if panels not in ("same", "separate"):
        raise ConfigError(f"--panels must be same or separate, got {panels!r}")
    from lmlab.experiments.plot import DEFAULT_METRICS, load_runs, plot_runs, save_figure

    figure = plot_runs(load_runs(runs), x=x, metrics=metric or DEFAULT_METRICS, log=log,
                       smooth=smooth, panels=panels)  # type: ignore[arg-type]
    typer.echo(f"wrote {save_figure(figure, out)}")
