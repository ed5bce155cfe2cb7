"""`lmlab presets`: the configs and sweep files that ship with lmlab, listed or printed."""

from typing import Annotated

import typer

from lmlab.cli.app import app


@app.command("presets")
def presets_command(
    name: Annotated[str | None, typer.Argument(
        help="A preset to print as TOML, e.g. tinystories-cpu (default: list them all).",
        show_default=False)] = None,
) -> None:
    """List the presets that ship with lmlab, or print one.

    A preset's name works wherever a config or sweep file does, from any folder: lmlab train
    tinystories-cpu, lmlab sweep lr_sweep --variant cpu. To start a config of your own, print a
    preset into a file and edit it: lmlab presets tinystories-cpu > my.toml. A file that exists
    is always read before a preset of the same name.

    \b
    Examples:
      lmlab presets
      lmlab presets tinystories-cpu
      lmlab presets lr_sweep
    """
    from lmlab.config import all_presets, preset_path

    if name is not None:
        typer.echo(preset_path(name).read_text(encoding="utf-8"), nl=False)
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="lmlab presets NAME prints one; docs/presets.md explains each")
    for column in ("name", "kind", "variants", "what it is"):
        table.add_column(column, overflow="fold", no_wrap=column != "what it is")
    for preset in all_presets().values():
        table.add_row(preset.name, preset.kind, ", ".join(preset.variants), preset.description)
    Console().print(table)
