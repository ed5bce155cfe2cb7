"""`lmlab train` and `lmlab eval`: the CLI over :func:`lmlab.training.loop.train` and
:func:`lmlab.training.evaluate.evaluate`."""

import shlex
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from lmlab.cli.app import app
from lmlab.cli.options import (
    ConfigFile,
    Device,
    Overrides,
    RunTokenizer,
    TrainedModel,
    load_trained,
)


def _config_reference() -> str:
    """Every config key with its description: the reference that ends ``lmlab train --help``."""
    from lmlab.config import Config

    lines = ["Config keys (TOML tables; the same dotted names work as overrides):"]
    for section, field in Config.model_fields.items():
        for name, sub in field.annotation.model_fields.items():  # type: ignore[union-attr]
            value = None if sub.is_required() else sub.get_default(call_default_factory=True)
            value = str(value) if isinstance(value, Path) else value
            default = "required" if sub.is_required() else f"default {value!r}"
            lines.append(f"{section}.{name} ({default}): {sub.description}")
    return "\n\n".join(lines)


def _say(message: str, err: bool = False) -> None:
    """Print a run's outcome once: under torchrun, rank 0 speaks for every rank."""
    from lmlab.training.distributed import world_from_env

    if world_from_env().is_main:
        typer.echo(message, err=err)


class _TrainCommand(TyperCommand):
    """`lmlab train`, whose help ends with the config reference, written when the help is shown:
    it needs the config models (pydantic, 0.2 s to import), which starting any other command
    does not."""

    def format_help(self, ctx, formatter) -> None:
        self.epilog = _config_reference()
        super().format_help(ctx, formatter)


@app.command("train", cls=_TrainCommand)
def train_command(
    config: ConfigFile,
    overrides: Overrides = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run from its last checkpoint (same as run.resume=must): "
        "the steps that follow equal those of an uninterrupted run.")] = False,
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Draw a progress bar with loss, tokens/s and ETA.")
    ] = True,
    nproc: Annotated[int | None, typer.Option(
        "--nproc", help="Train data-parallel on N processes of this machine, one per GPU: runs "
        "torchrun --standalone --nproc_per_node N -m lmlab train with the other arguments. "
        "Each rank trains on batch_size * grad_accum sequences per step, so the global batch is "
        "N times that; resume with --resume on any N that keeps it.", show_default=False)
    ] = None,
) -> None:
    """Train a model from a TOML config or preset.

    Writes runs/<name>/ with config.json, env.json, metrics.jsonl, status and
    checkpoints/last.pt. Ctrl-C (or SIGTERM) ends the step, saves a checkpoint and stops; a
    second Ctrl-C stops at once. A run that does not finish ends with the command that
    continues it.

    \b
    Examples:
      lmlab train tinystories-cpu
      lmlab train tinystories-cpu optim.lr_max=3e-3 run.name=lr3e-3
      lmlab train tinystories-17m --resume --nproc 4
    """
    from lmlab.config import load_config
    from lmlab.errors import LmlabError
    from lmlab.training.distributed import launch, world_from_env
    from lmlab.training.loop import train
    from lmlab.training.outcome import Hints, outcome, stopped

    if nproc is not None:
        flags = ["--resume"] if resume else []
        progress_flag = "--progress" if progress else "--no-progress"
        raise typer.Exit(launch(nproc, ["train", str(config), *(overrides or []), *flags,
                                        progress_flag]))
    words = [*(overrides or []), *(["run.resume=must"] if resume else [])]
    run_config = load_config(config, words)
    size = world_from_env().size
    again, same_world = ["lmlab", "train", str(config), *(overrides or [])], (
        ["--nproc", str(size)] if size > 1 else [])
    hints = Hints(shlex.join([*again, "--resume", *same_world]),
                  shlex.join([*again, "run.resume=auto", *same_world]))
    try:
        result = train(run_config, show_progress=progress, say=lambda line: _say(line, err=True))
    except LmlabError:
        raise  # a one-line error (bad input, a full disk) that names what to fix
    except (Exception, KeyboardInterrupt) as exc:
        if not isinstance(exc, KeyboardInterrupt):
            traceback.print_exc()  # unforeseen: where it happened, for a bug report
        done = stopped(run_config.run_dir, exc, hints)
    else:
        done = outcome(result, hints)
    _say(done.message, err=done.to_stderr)
    if done.exit_code:
        raise typer.Exit(done.exit_code)


@app.command("eval")
def eval_command(
    run: TrainedModel,
    data: Annotated[Path | None, typer.Option(
        help="Token file (.bin with its sidecar) to evaluate on, every token once.",
        show_default=False)] = None,
    text: Annotated[Path | None, typer.Option(
        help="A UTF-8 text file instead: tokenized with the run's tokenizer first (no .bin "
        "needed).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per forward pass.")] = 32,
    tokenizer: RunTokenizer = None,
    device: Device = "auto",
) -> None:
    """Loss, perplexity and bits per byte on a token or text file.

    Every token is scored once, in windows of the model's context length.

    \b
    Examples:
      lmlab eval runs/tinystories-cpu --data data/tinystories-2k/valid.bin
      lmlab eval runs/imported --text data/tinystories/valid.txt --device cpu
    """
    from lmlab.device import resolve_device, resolve_dtype
    from lmlab.errors import ConfigError
    from lmlab.training.evaluate import evaluate

    if (data is None) == (text is None):
        raise ConfigError("give one of --data FILE.bin or --text FILE.txt")
    torch_device = resolve_device(device)
    from lmlab.inference import run_config, text_tokens
    from lmlab.weights import load_model

    if text is not None:
        model, model_config, tok = load_trained(run, tokenizer, device=torch_device)
        tokens, source = text_tokens(tok, text, model_config.context_length), text
    else:
        model, model_config = load_model(run, device=torch_device)
    config = run_config(run)  # None for a weights file: no training data, dtype auto
    if data is not None:
        tokens, source = _checked_tokens(data, model_config, config), data
    metrics = evaluate(model, tokens, batch_size=batch_size,
                       context_length=model_config.context_length, device=torch_device,
                       autocast_dtype=resolve_dtype(config.train.dtype if config else "auto",
                                                    torch_device))
    typer.echo(f"loss {metrics['val/loss']:.4f}  ppl {metrics['val/ppl']:.3f}  "
               f"bpb {metrics['val/bpb']:.4f}  ({len(tokens):,} tokens of {source})")


def _checked_tokens(data: Path, model_config, config):
    """The token file, checked against the model and against the run's training data (a
    weights file, ``config`` None, has none to check against)."""
    from lmlab.tokens import load_tokens, sidecar_path

    train_path = config.data.train_path if config is not None else None
    if train_path is not None and not sidecar_path(train_path).is_file():
        typer.echo(f"warning: the run's training data {train_path} is gone, so {data} cannot be "
                   f"checked to come from the same tokenizer (only the vocabulary size is)",
                   err=True)
        train_path = None
    return load_tokens(data, vocab_size=model_config.vocab_size,
                       context_length=model_config.context_length, tokenizer_of=train_path)
