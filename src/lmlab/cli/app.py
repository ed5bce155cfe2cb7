"""The `lmlab` typer application that every command module registers on."""

from importlib.metadata import version
from typing import Annotated

import typer

app = typer.Typer(
    name="lmlab",
    help="Pretrain small Transformer language models from scratch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"lmlab {version('lmlab')}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print lmlab's version and exit.")] = False) -> None:
    """Pretrain small Transformer language models from scratch."""
