"""The `lmlab` typer application that every command module registers on."""

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
