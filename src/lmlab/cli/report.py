"""`lmlab report`: the CLI over :func:`lmlab.experiments.report.write_report`."""

from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app


@app.command("report")
def report_command(
    runs_dir: Annotated[Path, typer.Argument(
        help="Folder of runs and sweeps, e.g. runs/.", show_default=False)],
    out: Annotated[Path, typer.Option(
        help="Markdown file to write; the figures go beside it.")] = Path("EXPERIMENTS.md"),
    samples: Annotated[bool, typer.Option(
        "--samples/--no-samples", help="A short sample from each group's best run.")] = True,
) -> None:
    """Write the experiment log of a folder of runs, in Markdown.

    Per sweep: a table of what varied and how each run ended, its config changes from the base,
    a learning-curve figure and a sample from the best run.

    \b
    Examples:
      lmlab report runs --out EXPERIMENTS.md
      lmlab report runs/lr --out docs/lr.md --no-samples
    """
    from lmlab.experiments.report import write_report

    path = write_report(runs_dir, out, samples=samples,
                        on_step=lambda message: typer.echo(message, err=True))
    typer.echo(f"wrote {path}")
