"""The arguments and options that several commands share, each defined once so that it has one
name, one meaning and one help text in every ``--help``.

Only typer and the standard library are imported here: every command's module imports this one
when ``lmlab`` starts.
"""

from pathlib import Path
from typing import Annotated

import typer

ConfigFile = Annotated[Path, typer.Argument(
    help="TOML config file, or a preset's name, e.g. tinystories-cpu (lmlab presets lists them).",
    show_default=False)]
"""A training config or preset (``train``, ``estimate``)."""

Overrides = Annotated[list[str] | None, typer.Argument(
    help="Config overrides as section.key=value, e.g. optim.lr_max=3e-3 run.name=lr3e-3.",
    show_default=False)]
"""Dotted ``section.key=value`` words on top of the config (``train``, ``estimate``,
``quickstart``)."""

TrainedModel = Annotated[Path, typer.Argument(
    help="Run directory (its checkpoints/last.pt), checkpoint file or exported .safetensors "
    "file.", show_default=False)]
"""A trained model, as :func:`lmlab.inference.load_run` finds it (``eval``, ``generate``,
``export``)."""

RunTokenizer = Annotated[Path | None, typer.Option(
    "--tokenizer", help="Tokenizer directory (default: the one an exported file carries, or "
    "the tokenizer/ folder next to the run's training .bin, checked against its sidecar).",
    show_default=False)]
"""The tokenizer of a trained model, when it is not where :func:`lmlab.inference.load_run`
looks (``generate``, ``export``)."""

TOKENIZER_DIR_HELP = "Tokenizer directory written by `lmlab tokenizer train`."

TokenizerDir = Annotated[Path, typer.Option("--tokenizer", help=TOKENIZER_DIR_HELP)]
"""A tokenizer saved by ``lmlab tokenizer train`` (``tokenizer encode``)."""

Device = Annotated[str, typer.Option(help="auto (cuda > mps > cpu), cpu, mps, cuda or cuda:N.")]
"""Where a trained model runs (``eval``, ``generate``); training reads ``train.device``."""

Workers = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Processes to use (default: the number of CPUs; encoding uses one "
    "per 4 MB at most).", show_default=False)]
"""Processes of the tokenizer's work (``tokenizer train``, ``tokenizer encode``)."""
