"""`lmlab export` (a trained model as one safetensors file, or as a Hugging Face Llama folder,
Qwen3 with QK-norm) and `lmlab import` (a Hugging Face Llama or Qwen3 folder as an lmlab model)."""

from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app


@app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(
        help="Run directory (its checkpoints/last.pt) or a checkpoint file.", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        help="File to write (default: model.safetensors in the run directory); with --format "
        "hf, the folder (default: hf/ in the run directory).",
        show_default=False)] = None,
    format: Annotated[str, typer.Option(
        help="lmlab: one safetensors file (weights, config, tokenizer); hf: a Hugging Face "
        "Llama folder (Qwen3 with model.qk_norm; config.json, model.safetensors, "
        "tokenizer.json, ...) that "
        "AutoModelForCausalLM and AutoTokenizer load; --out names the folder.")] = "lmlab",
    tokenizer_dir: Annotated[Path | None, typer.Option(
        "--tokenizer", help="Tokenizer directory to bundle (default: the one that made the "
        "run's data, found as `lmlab generate` finds it).", show_default=False)] = None,
) -> None:
    """Save a trained model as one file, or a Hugging Face folder.

    The run's config and its tokenizer go into the file's metadata: any safetensors reader opens
    it (no pickle, no code run on load), and `lmlab generate` and `lmlab eval` take it in place of
    a run directory, wherever the file is copied."""
    from lmlab.errors import ConfigError
    from lmlab.inference import load_run
    from lmlab.training.checkpoint import export_weights

    if format not in ("lmlab", "hf"):
        raise ConfigError(f"--format must be lmlab or hf, got {format!r}")
    model, config, tokenizer = load_run(run, tokenizer_dir)
    if format == "hf":
        from lmlab.hf import ARCHITECTURES, export_hf

        folder = export_hf(model, tokenizer, out or (run if run.is_dir() else run.parent) / "hf")
        name = ARCHITECTURES[config.model.qk_norm][1].removesuffix("ForCausalLM")
        typer.echo(f"wrote {folder} ({name}, {config.model.num_layers} layers, "
                   f"{tokenizer.vocab_size:,}-token tokenizer.json)")
        return
    out = out or (run if run.is_dir() else run.parent) / "model.safetensors"
    export_weights(model, config, out, tokenizer.to_texts())
    size = sum(p.numel() for p in model.parameters())
    typer.echo(f"wrote {out} ({size:,} parameters, with its {tokenizer.vocab_size:,}-token "
               f"tokenizer)")


@app.command("import")
def import_command(
    folder: Annotated[Path, typer.Argument(
        help="A local Hugging Face Llama or Qwen3 folder: config.json, *.safetensors, "
        "tokenizer.json.",
        show_default=False)],
    out: Annotated[Path, typer.Option(help="Run directory to create.", show_default=False)],
) -> None:
    """Turn a Hugging Face Llama (or Qwen3) into an lmlab model.

    Writes OUT/model.safetensors (weights, config, tokenizer): lmlab generate and lmlab eval
    take OUT, and train.init_from=OUT fine-tunes from it. Architectures lmlab cannot represent
    (grouped-query attention, biases, RoPE scaling, other activations) are an error."""
    from lmlab.hf import import_hf

    model, config = import_hf(folder, out)
    typer.echo(f"wrote {out / 'model.safetensors'} ({config.model.num_layers} layers, "
               f"{model.num_parameters():,} parameters)")
