"""Model files: a trained model's weights with its model config and tokenizer, apart from the
training state, for ``lmlab eval``, ``generate``, ``export``, ``import`` and ``train.init_from``.

An lmlab weights file is one ``safetensors`` file (any framework reads it, no pickle) whose
metadata holds::

    format      "lmlab-weights-2"
    model       the ModelConfig, as JSON (nothing of the optimizer, schedule, data or run)
    tokenizer   the tokenizer's files (Tokenizer.to_texts), as JSON, when bundled

A file of format ``"lmlab-weights-1"`` (written before model files stood apart from training)
holds the run's whole config under ``config``; its ``model`` table is read. :func:`load_model`
also reads the model of a training checkpoint (``lmlab.training.checkpoint``) or run directory.
"""

import json
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError

from lmlab.atomic import atomic_path
from lmlab.config import ModelConfig, model_differences
from lmlab.errors import CheckpointError, ConfigError, first_line
from lmlab.nn import TransformerLM
from lmlab.training.checkpoint import read_checkpoint, restore_model, saved_model_config
from lmlab.training.rundir import RunDir

WEIGHTS_FORMAT = "lmlab-weights-2"
FORMAT_1 = "lmlab-weights-1"
"""The first format: the run's whole config (``Config`` as JSON) under ``config``."""
WEIGHTS_FILE = "model.safetensors"
"""The weights file's name in a run directory (an export or an import)."""


def model_file(path: str | Path) -> Path:
    """The file that holds a run's model: ``path`` itself, or in a run directory its
    ``checkpoints/last.pt``, else its ``model.safetensors`` (an export or an import)."""
    path = Path(path)
    if not path.is_dir():
        return path
    checkpoint, weights = RunDir(path).checkpoint, path / WEIGHTS_FILE
    return weights if not checkpoint.exists() and weights.exists() else checkpoint


def load_model(path: str | Path, device: torch.device | str | None = None
               ) -> tuple[TransformerLM, ModelConfig]:
    """A trained model and its config from a run directory, a checkpoint file or a weights file
    written by :func:`export_weights`, ready for inference (``eval()`` mode, on ``device``,
    default cpu).

    >>> model, model_config = load_model("runs/tinystories-cpu")  # doctest: +SKIP
    """
    path = model_file(path)
    if path.suffix == ".safetensors":
        return _load_weights(path, device)
    state = read_checkpoint(path)
    if "config" not in state:
        raise CheckpointError(f"{path} has no config: it was not saved by `lmlab train`")
    model_config = saved_model_config(state["config"].get("model", {}), path)
    model = TransformerLM(model_config, device=device)
    restore_model(state, model, None, path)
    return model.eval(), model_config


def export_weights(model: TransformerLM, out: str | Path,
                   tokenizer_files: dict[str, str] | None = None) -> None:
    """Write ``model``'s weights to ``out`` as safetensors (atomically), its ``ModelConfig`` and,
    when given, the tokenizer's files (:meth:`Tokenizer.to_texts`) in its metadata, so the one
    file is all ``lmlab generate`` needs wherever it is copied.

    Tensor names are the model's state-dict names, each present: a tied embedding is stored
    under both of its names (safetensors holds no shared tensors, so the second is a copy, one
    vocab x d_model matrix more), and a plain ``load_file`` + ``load_state_dict`` finds every key.
    """
    metadata = {"format": WEIGHTS_FORMAT,
                "model": json.dumps(model.config.model_dump(mode="json"))}
    if tokenizer_files is not None:
        metadata["tokenizer"] = json.dumps(tokenizer_files)
    stored: dict[int, str] = {}
    tensors = {}
    for name, tensor in model.state_dict().items():
        first = stored.setdefault(tensor.data_ptr(), name)
        tensors[name] = tensor.detach().contiguous() if first == name else tensor.detach().clone()
    with atomic_path(out) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata)


def bundled_tokenizer(path: str | Path) -> dict[str, str] | None:
    """The tokenizer files :func:`export_weights` put in a weights file, or None."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        with safetensors.safe_open(path, "pt") as weights:
            bundled = (weights.metadata() or {}).get("tokenizer")
    except (SafetensorError, OSError):
        return None  # load_model says what is wrong with the file
    return json.loads(bundled) if bundled else None


def initial_weights(source: Path, wanted: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of ``train.init_from``, checked to be of the configured model (dropout, the
    attention kernel and the embedding's init aside, which change no loaded weight)."""
    model, saved = load_model(source)
    differ = model_differences(saved, wanted, ignoring=frozenset(
        {"dropout", "fused_attention", "embedding_std"}))
    if differ:
        raise ConfigError(f"train.init_from={source} holds another model: {'; '.join(differ)}")
    return model.state_dict()


def _load_weights(path: Path, device: torch.device | str | None
                  ) -> tuple[TransformerLM, ModelConfig]:
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        with safetensors.safe_open(path, "pt") as weights:
            metadata = weights.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is truncated or not a safetensors file "
                              f"({first_line(exc)})") from None
    model_config = saved_model_config(_model_table(metadata, path), path)
    model = TransformerLM(model_config, device=device)
    try:
        model.load_state_dict(safetensors.torch.load_file(path, device=str(device or "cpu")))
    except (RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"{path} does not fit its own config: "
                              f"{first_line(exc)[:300]}") from None
    return model.eval(), model_config


def _model_table(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    """The saved ``model`` table of either format's metadata."""
    try:
        if metadata.get("format") == WEIGHTS_FORMAT and "model" in metadata:
            return json.loads(metadata["model"])
        if metadata.get("format") == FORMAT_1 and "config" in metadata:
            return json.loads(metadata["config"]).get("model", {})
    except (json.JSONDecodeError, AttributeError):
        pass
    raise CheckpointError(f"{path} holds no lmlab config: it was not written by `lmlab export`")
