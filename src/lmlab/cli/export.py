"""`lmlab export` (a trained model as one safetensors file, or as a Hugging Face Llama folder,
Qwen3 with QK-norm) and `lmlab import` (a Hugging Face Llama or Qwen3 folder as an lmlab model)."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.cli.options import RunTokenizer, TrainedModel


class ExportFormat(StrEnum):
    """What ``lmlab export`` writes."""

    lmlab = "lmlab"
    hf = "hf"


@app.command("export")
def export_command(
    run: TrainedModel,
    out: Annotated[Path | None, typer.Option(
        help="File to write (default: model.safetensors in the run directory); with --format "
        "hf, the folder (default: hf/ in the run directory).",
        show_default=False)] = None,
    format: Annotated[ExportFormat, typer.Option(
        help="lmlab: one safetensors file (weights, model config, tokenizer); hf: a Hugging Face "
        "Llama folder (Qwen3 with model.qk_norm; config.json, model.safetensors, "
        "tokenizer.json, ...) that "
        "AutoModelForCausalLM and AutoTokenizer load; --out names the folder.")
    ] = ExportFormat.lmlab,
    tokenizer_dir: RunTokenizer = None,
) -> None:
    """Save a trained model as one file, or a Hugging Face folder.

    The model's config and its tokenizer go into the file's metadata: any safetensors reader opens
    it (no pickle, no code run on load), and `lmlab generate` and `lmlab eval` take it in place of
    a run directory, wherever the file is copied.

    \b
    Examples:
      lmlab export runs/tinystories-cpu
      lmlab export runs/tinystories-cpu --format hf --out hf/tinystories-cpu
    """
    from lmlab.inference import load_run
    from lmlab.weights import export_weights

    model, model_config, tokenizer = load_run(run, tokenizer_dir)
    if format is ExportFormat.hf:
        from lmlab.hf import ARCHITECTURES, export_hf

        folder = export_hf(model, tokenizer, out or (run if run.is_dir() else run.parent) / "hf")
        name = ARCHITECTURES[model_config.qk_norm][1].removesuffix("ForCausalLM")
        typer.echo(f"wrote {folder} ({name}, {model_config.num_layers} layers, "
                   f"{tokenizer.vocab_size:,}-token tokenizer.json)")
        return
    out = out or (run if run.is_dir() else run.parent) / "model.safetensors"
    export_weights(model, out, tokenizer.to_texts())
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

    Writes OUT/model.safetensors (weights, model config, tokenizer): lmlab generate and lmlab eval
    take OUT, and train.init_from=OUT fine-tunes from it. Architectures lmlab cannot represent
    (grouped-query attention, biases, RoPE scaling, other activations) are an error.

    \b
    Examples:
      lmlab import hf/tinystories-cpu --out runs/imported
      lmlab import ~/models/SmolLM2-135M --out runs/smollm2
    """
    from lmlab.hf import import_hf

    model, model_config = import_hf(folder, out)
    typer.echo(f"wrote {out / 'model.safetensors'} ({model_config.num_layers} layers, "
               f"{model.num_parameters():,} parameters)")
