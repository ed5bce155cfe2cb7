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

TRAINED_MODEL_HELP = ("Run directory (its checkpoints/last.pt), checkpoint file or exported "
                      ".safetensors file.")
"""What the commands that read a trained model (``eval``, ``generate``) accept."""


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"lmlab {version('lmlab')}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print lmlab's version and exit.")] = False) -> None:
    """Pretrain small Transformer language models from scratch."""
