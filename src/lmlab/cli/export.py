"""`lmlab export` (a trained model as one safetensors file, or as a Hugging Face Llama folder,
Qwen3 with QK-norm) and `lmlab import` (a Hugging Face Llama or Qwen3 folder as an lmlab model)."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.cli.options import Force, RunTokenizer, TrainedModel, check_folder, load_trained
from lmlab.text import plural

HF_FILES = frozenset({"config.json", "generation_config.json", "model.safetensors",
                      "tokenizer.json", "tokenizer_config.json"})
"""What ``lmlab export --format hf`` writes into its folder."""


class ExportFormat(StrEnum):
    """What ``lmlab export`` writes."""

    lmlab = "lmlab"
    hf = "hf"


@app.command("export")
def export_command(
    run: TrainedModel,
    out: Annotated[Path | None, typer.Option(
        help="File to write (default: model.safetensors in the run directory); with --format "
        "hf, the folder (default: hf/ in the run directory). An existing file is written over "
        "only when it is an lmlab model file, a folder only when it holds nothing but a previous "
        "export (or with --force).",
        show_default=False)] = None,
    format: Annotated[ExportFormat, typer.Option(
        help="lmlab: one safetensors file (weights, model config, tokenizer); hf: a Hugging Face "
        "Llama folder (Qwen3 with model.qk_norm; config.json, model.safetensors, "
        "tokenizer.json, ...) that "
        "AutoModelForCausalLM and AutoTokenizer load; --out names the folder.")
    ] = ExportFormat.lmlab,
    tokenizer_dir: RunTokenizer = None,
    force: Force = False,
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
    from lmlab.weights import export_weights

    out = out or (run if run.is_dir() else run.parent) / (
        "hf" if format is ExportFormat.hf else "model.safetensors")
    if format is ExportFormat.hf:
        check_folder(out, HF_FILES, "lmlab export --format hf", force)
    else:
        _check_model_file(out, force)
    model, model_config, tokenizer = load_trained(run, tokenizer_dir)
    if format is ExportFormat.hf:
        from lmlab.hf import ARCHITECTURES, export_hf

        folder = export_hf(model, tokenizer, out)
        name = ARCHITECTURES[model_config.qk_norm][1].removesuffix("ForCausalLM")
        typer.echo(f"wrote {folder} ({name}, {plural(model_config.num_layers, 'layer')}, "
                   f"{tokenizer.vocab_size:,}-token tokenizer.json)")
        return
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
    out: Annotated[Path, typer.Option(
        help="Run directory to create (or a previous import's: other files in it need "
        "--force).", show_default=False)],
    force: Force = False,
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

    check_folder(out, frozenset({"model.safetensors"}), "lmlab import", force)
    _check_model_file(out / "model.safetensors", force)
    model, model_config = import_hf(folder, out)
    typer.echo(f"wrote {out / 'model.safetensors'} ({plural(model_config.num_layers, 'layer')}, "
               f"{model.num_parameters():,} parameters)")


def _check_model_file(out: Path, force: bool) -> None:
    """Refuse to write a model file over ``out`` when it is a folder, or a file that is not an
    lmlab model file (a previous export, which is written over), unless ``force``."""
    from lmlab.errors import ConfigError

    if out.is_dir():
        raise ConfigError(f"{out} is a folder: --out names the .safetensors file to write")
    if out.exists() and not force and not _weights_format(out).startswith("lmlab-weights"):
        raise ConfigError(f"{out} exists and is not an lmlab model file: choose another --out, "
                          "or pass --force to overwrite it")


def _weights_format(path: Path) -> str:
    """The ``format`` in a safetensors file's metadata (``""`` when it has none or is none):
    read from its JSON header, not loaded."""
    import json

    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size)) if 0 < size < 1 << 27 else {}
        return str(header.get("__metadata__", {}).get("format", ""))
    except (OSError, ValueError, AttributeError):
        return ""
