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
looks (``generate``, ``export``, ``eval --text``)."""


def load_trained(run: Path, tokenizer: Path | None = None, device="cpu"):
    """:func:`lmlab.inference.load_run` of a :data:`TrainedModel`, a tokenizer not found
    said with the flag that gives one (the library names no flags)."""
    from lmlab.errors import TokenizerError
    from lmlab.inference import TokenizerNotFound, load_run

    try:
        return load_run(run, tokenizer, device=device)
    except TokenizerNotFound as exc:
        raise TokenizerError(f"{exc.what}: pass --tokenizer DIR") from None

TOKENIZER_DIR_HELP = "Tokenizer directory written by `lmlab tokenizer train`."

TokenizerDir = Annotated[Path, typer.Option("--tokenizer", help=TOKENIZER_DIR_HELP)]
"""A tokenizer saved by ``lmlab tokenizer train`` (``tokenizer encode``)."""

Device = Annotated[str, typer.Option(help="auto (cuda > mps > cpu), cpu, mps, cuda or cuda:N.")]
"""Where a trained model runs (``eval``, ``generate``); training reads ``train.device``."""

Workers = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Processes to use (default: the number of CPUs; encoding uses one "
    "per 4 MB at most).", show_default=False)]
"""Processes of the tokenizer's work (``tokenizer train``, ``tokenizer encode``)."""

Force = Annotated[bool, typer.Option(
    "--force", help="Write over files and into folders that this command did not make (it "
    "refuses by default; --out says what it writes over without asking).")]
"""Overwrite anyway: each command that writes where something may already be (``plot``,
``report``, ``export``, ``tokenizer train``, ``tokenizer encode``, ``tokenizer export``) refuses
to write over a file or into a folder that it did not make itself, in one line that names it
and this flag."""


def check_folder(folder: Path, own: frozenset[str], command: str, force: bool) -> None:
    """Refuse to write into ``folder`` when it holds anything but files named in ``own`` (what
    ``command`` writes there), unless ``force``: a folder another command made (a run, a data
    folder) is not filled by accident, and running the command again still works."""
    from lmlab.errors import ConfigError

    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file: --out names the folder to write into")
    others = sorted(path.name for path in folder.iterdir() if path.name not in own) if (
        folder.is_dir() and not force) else []
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise ConfigError(f"{folder} holds files that {command} did not write ({shown}): choose "
                          "another --out, or pass --force to write into it")
