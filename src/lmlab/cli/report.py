"""`lmlab report`: the CLI over :func:`lmlab.experiments.report.write_report`."""

from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.cli.options import Force


@app.command("report")
def report_command(
    runs_dir: Annotated[Path, typer.Argument(
        help="Folder of runs and sweeps, e.g. runs/.", show_default=False)],
    out: Annotated[Path, typer.Option(
        help="Markdown file to write; the figures go beside it. Files there are written over "
        "only when this report wrote them (or with --force).")] = Path("EXPERIMENTS.md"),
    samples: Annotated[bool, typer.Option(
        "--samples/--no-samples", help="A short sample from each group's best run.")] = True,
    force: Force = False,
) -> None:
    """Write the experiment log of a folder of runs, in Markdown.

    Per sweep: a table of what varied and how each run ended, its config changes from the base,
    a learning-curve figure, the edge of stability of an lr sweep and a sample from the best
    run. Single runs in the folder itself are listed as runs, not compared as a sweep.

    The report writes over its own files alone: .lmlab-report.json beside it lists what it
    wrote, and any other file in the way (a figure of yours named like one of its own), or an
    --out inside a run directory, is an error unless --force.

    \b
    Examples:
      lmlab report runs --out EXPERIMENTS.md
      lmlab report runs/lr --out docs/lr.md --no-samples
    """
    from lmlab.experiments.report import write_report

    path = write_report(runs_dir, out, samples=samples, force=force,
                        on_step=lambda message: typer.echo(message, err=True))
    typer.echo(f"wrote {path}")
