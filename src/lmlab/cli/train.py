"""`lmlab train` and `lmlab eval`: the CLI over :func:`lmlab.training.loop.train` and
:func:`lmlab.training.evaluate.evaluate`."""

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from lmlab.cli.app import TRAINED_MODEL_HELP, app


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
    config: Annotated[Path, typer.Argument(
        help="TOML config file, e.g. configs/tinystories-cpu.toml.", show_default=False)],
    overrides: Annotated[list[str] | None, typer.Argument(
        help="Config overrides as section.key=value, e.g. optim.lr_max=3e-3 run.name=lr3e-3.",
        show_default=False)] = None,
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
    """Train a model from a TOML config.

    Writes runs/<name>/ with config.json, env.json, metrics.jsonl, status and
    checkpoints/last.pt. Ctrl-C saves a checkpoint and stops."""
    from lmlab.config import load_config
    from lmlab.training.distributed import launch, world_from_env
    from lmlab.training.loop import train

    if nproc is not None:
        flags = ["--resume"] if resume else []
        progress_flag = "--progress" if progress else "--no-progress"
        raise typer.Exit(launch(nproc, ["train", str(config), *(overrides or []), *flags,
                                        progress_flag]))
    words = [*(overrides or []), *(["run.resume=must"] if resume else [])]
    result = train(load_config(config, words), show_progress=progress,
                   say=lambda line: _say(line, err=True))
    summary = ", ".join(f"{key} {value:.4g}" for key, value in result.metrics.items()
                        if key.startswith("val/")) or "no validation metrics logged"
    before = "had already " if result.already_done else ""
    if result.status == "finished":
        _say(f"{before}finished {result.run_dir} at step {result.step} "
             f"({result.tokens:,} tokens): {summary}")
    elif result.status == "interrupted":
        world = world_from_env()
        same_world = f" --nproc {world.size}" if world.size > 1 else ""
        _say(f"interrupted at step {result.step}; checkpoint saved. Resume with: "
             f"lmlab train {config} {' '.join(overrides or [])} --resume{same_world}", err=True)
        raise typer.Exit(130)
    else:
        _say(f"error: run diverged: {result.reason}; metrics kept in {result.run_dir}", err=True)
        raise typer.Exit(1)


@app.command("eval")
def eval_command(
    run: Annotated[Path, typer.Argument(
        help=TRAINED_MODEL_HELP, show_default=False)],
    data: Annotated[Path | None, typer.Option(
        help="Token file (.bin with its sidecar) to evaluate on, every token once.",
        show_default=False)] = None,
    text: Annotated[Path | None, typer.Option(
        help="A UTF-8 text file instead: tokenized with the run's tokenizer first (no .bin "
        "needed).", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Sequences per forward pass.")] = 32,
    device: Annotated[str, typer.Option(
        help="auto (cuda > mps > cpu), cpu, mps, cuda or cuda:N.")] = "auto",
) -> None:
    """Loss, perplexity and bits per byte on a token or text file.

    Every token is scored once, in windows of the model's context length."""
    from lmlab.device import resolve_device, resolve_dtype
    from lmlab.errors import ConfigError
    from lmlab.training.evaluate import evaluate

    if (data is None) == (text is None):
        raise ConfigError("give one of --data FILE.bin or --text FILE.txt")
    torch_device = resolve_device(device)
    if text is not None:
        from lmlab.inference import load_run, text_tokens

        model, config, tokenizer = load_run(run, device=torch_device)
        tokens, source = text_tokens(tokenizer, text, config.model.context_length), text
    else:
        from lmlab.training.checkpoint import load_model

        model, config = load_model(run, device=torch_device)
        tokens, source = _checked_tokens(data, config), data
    metrics = evaluate(model, tokens, batch_size=batch_size,
                       context_length=config.model.context_length, device=torch_device,
                       autocast_dtype=resolve_dtype(config.train.dtype, torch_device))
    typer.echo(f"loss {metrics['val/loss']:.4f}  ppl {metrics['val/ppl']:.3f}  "
               f"bpb {metrics['val/bpb']:.4f}  ({len(tokens):,} tokens of {source})")


def _checked_tokens(data: Path, config):
    """The token file, checked against the model and against the run's training data."""
    from lmlab.tokens import load_tokens, sidecar_path

    train_path = config.data.train_path
    if not sidecar_path(train_path).is_file():
        typer.echo(f"warning: the run's training data {train_path} is gone, so {data} cannot be "
                   f"checked to come from the same tokenizer (only the vocabulary size is)",
                   err=True)
        train_path = None
    return load_tokens(data, vocab_size=config.model.vocab_size,
                       context_length=config.model.context_length, tokenizer_of=train_path)
