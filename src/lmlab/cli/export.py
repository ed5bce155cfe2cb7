"""`lmlab export`: a trained model's weights as one safetensors file."""

from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(
        help="Run directory (its checkpoints/last.pt) or a checkpoint file.", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        help="File to write (default: model.safetensors in the run directory).",
        show_default=False)] = None,
    tokenizer_dir: Annotated[Path | None, typer.Option(
        "--tokenizer", help="Tokenizer directory to bundle (default: the one that made the "
        "run's data, found as `lmlab generate` finds it).", show_default=False)] = None,
) -> None:
    """Save a trained model's weights as one safetensors file.

    The run's config and its tokenizer go into the file's metadata: any safetensors reader opens
    it (no pickle, no code run on load), and `lmlab generate` and `lmlab eval` take it in place of
    a run directory, wherever the file is copied."""
    from lmlab.inference import load_run
    from lmlab.training.checkpoint import export_weights

    model, config, tokenizer = load_run(run, tokenizer_dir)
    out = out or (run if run.is_dir() else run.parent) / "model.safetensors"
    export_weights(model, config, out, tokenizer.to_texts())
    size = sum(p.numel() for p in model.parameters())
    typer.echo(f"wrote {out} ({size:,} parameters, with its {tokenizer.vocab_size:,}-token "
               f"tokenizer)")
