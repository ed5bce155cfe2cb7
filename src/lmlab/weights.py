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
from lmlab.text import plural
from lmlab.tokens import sidecar_path
from lmlab.training.checkpoint import read_checkpoint, restore_model, saved_model_config
from lmlab.training.lock import held_by
from lmlab.training.rundir import RunDir, is_run_dir

WEIGHTS_FORMAT = "lmlab-weights-2"
FORMAT_1 = "lmlab-weights-1"
"""The first format: the run's whole config (``Config`` as JSON) under ``config``."""
WEIGHTS_FILE = "model.safetensors"
"""The weights file's name in a run directory (an export or an import)."""


def model_file(path: str | Path) -> Path:
    """The file that holds a run's model: ``path`` itself, or in a run directory its
    ``checkpoints/last.pt``, else its ``model.safetensors`` (an export or an import).

    When there is none, a one-line :class:`CheckpointError` says why, in the user's terms: the
    run diverged, failed or was stopped before its first checkpoint, or is still training;
    the folder holds runs (named, to pick one); the file is a config, text or token file.
    """
    path = Path(path)
    if path.is_file():
        if (kind := _not_a_model(path)) is not None:
            raise CheckpointError(f"{path} is {kind}")
        return path
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run directory, checkpoint or weights file"
                              f"{_runs_beside(path)}")
    run = RunDir(path)
    for file in (run.checkpoint, path / WEIGHTS_FILE):
        if file.is_file():
            return file
    raise CheckpointError(_nothing_to_load(run))


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


_NOT_MODELS = {".toml": "a config, not a model: train it with `lmlab train {path}`",
               ".json": "a JSON file, not a model", ".jsonl": "a JSON lines file, not a model",
               ".txt": "a text file, not a model", ".log": "a log, not a model",
               ".md": "a Markdown file, not a model", ".csv": "a table, not a model"}
"""What a file of each suffix that no model file has is, in the error that refuses it."""


def _not_a_model(path: Path) -> str | None:
    """What ``path`` is when it is plainly not a model file (a run's own record, a config, a
    token or text file), or None: then reading it says whether it is one."""
    if path.name.endswith(".bin.json"):
        return "the sidecar of a token file, not a model"
    if path.suffix == ".bin" and sidecar_path(path).is_file():  # not pytorch_model.bin
        return "a token file (`lmlab tokenizer encode` wrote it), not a model"
    run = RunDir(path.parent)
    if is_run_dir(run.root) and path in (run.config, run.env, run.metrics, run.status_file,
                                         run.log, run.samples):
        return f"a file of the run directory {run.root}, not a model: give the folder itself"
    kind = _NOT_MODELS.get(path.suffix.lower())
    return None if kind is None else kind.format(path=path)


def _nothing_to_load(run: RunDir) -> str:
    """Why a folder with no model file has none: how its run ended, or what the folder is."""
    path, status = run.root, run.status
    if status == "diverged":
        return (f"{path} diverged ({run.reason or 'no reason recorded'}) before its first "
                f"checkpoint: it kept no model to load")
    if status in ("failed", "interrupted"):
        ended = "failed" if status == "failed" else "was interrupted"
        return f"{path} {ended} before its first checkpoint: it kept no model to load"
    if status == "running":
        if (holder := held_by(path)) is not None:
            return (f"{path} is still training ({holder}) and has saved no checkpoint yet: "
                    f"its model can be loaded after the first (train.ckpt_interval)")
        return (f"{path} was stopped (killed) before its first checkpoint: it kept no model "
                f"to load")
    if status == "finished":
        return f"{path} finished, but its {run.checkpoint.relative_to(path)} is gone"
    if run.exists():
        return f"{path} has not started training: it has no model to load yet"
    if runs := _runs_in(path):
        return f"{path} is a folder of {_listed(runs, path)}: give one of them"
    return (f"{path} is not a run directory: it holds no {run.checkpoint.relative_to(path)}, "
            f"{WEIGHTS_FILE} or config.json")


def _runs_beside(path: Path) -> str:
    """`` (runs/ holds 3 runs: a, b, c)`` when the folder a missing run was looked for in holds
    runs (a misspelt run name), else nothing."""
    runs = _runs_in(path.parent) if path.parent.is_dir() and path.parent != path else []
    return f" ({path.parent} holds {_listed(runs, path.parent)})" if runs else ""


def _runs_in(folder: Path) -> list[Path]:
    """The runs in ``folder`` or one level below (``runs/<name>``, a sweep's
    ``runs/<sweep>/<point>``), sorted: not a search of every folder below a home directory."""
    return sorted(file.parent for pattern in ("*/config.json", "*/*/config.json")
                  for file in folder.glob(pattern) if is_run_dir(file.parent))


def _listed(runs: list[Path], folder: Path, most: int = 5) -> str:
    """``4 runs (a, b, ...)``: how many runs, and the first few names under ``folder``."""
    names = [run.relative_to(folder).as_posix() for run in runs]
    shown = ", ".join(names[:most]) + (", ..." if len(names) > most else "")
    return f"{plural(len(names), 'run')} ({shown})"


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
    if (path.parent / "tokenizer_config.json").is_file():
        raise CheckpointError(f"{path} is a Hugging Face model's: make the folder an lmlab "
                              f"model with `lmlab import {path.parent} --out DIR`")
    raise CheckpointError(f"{path} holds no lmlab config: it was not written by `lmlab export`")
