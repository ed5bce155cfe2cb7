"""Checkpoints: the functional save/load of CS336, and the trainer's full, resumable state.

A training checkpoint is one ``torch.save`` file (:attr:`RunDir.checkpoint`,
``<run>/checkpoints/last.pt``) holding::

    format      "lmlab-checkpoint-1"
    iteration   optimizer steps taken
    model       model.state_dict()            (design.md's parameter names)
    optimizer   optimizer.state_dict()
    config      the run's resolved config, as JSON-able dicts
    rng         {"torch": ByteTensor, "cuda": [ByteTensor] | None}
    sampler     the data sampler's state (its generator: the data position)
    progress    tokens seen, training and wall-clock seconds, running loss sums

With all of these a resumed run takes exactly the steps the uninterrupted run would have taken.
Files are written atomically and read with ``weights_only=True`` (no arbitrary code on load).

For use elsewhere, :func:`export_weights` writes the weights alone as ``safetensors`` (a format
any framework reads without pickle), with the run's config in the file's metadata, so that
:func:`load_model` (and ``lmlab generate``) can read the file on its own.
"""

import json
import os
import pickle
from pathlib import Path
from typing import IO, Any

import safetensors.torch
import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from torch import nn

from lmlab.atomic import atomic_path
from lmlab.config import Config, ModelConfig, config_from_dict
from lmlab.errors import CheckpointError, ConfigError, first_line
from lmlab.training.rundir import RunDir

FORMAT = "lmlab-checkpoint-1"
WEIGHTS_FORMAT = "lmlab-weights-1"
_TRAINING_KEYS = ("iteration", "model", "optimizer", "config", "rng", "sampler", "progress")

PathOrFile = str | os.PathLike | IO[bytes]


def save_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, iteration: int,
                    out: PathOrFile) -> None:
    """Save model and optimizer state with the iteration count (atomically, when ``out`` is a
    path)."""
    _save({"format": FORMAT, "iteration": iteration, "model": model.state_dict(),
           "optimizer": optimizer.state_dict()}, out)


def load_checkpoint(src: PathOrFile, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None) -> int:
    """Restore model (and optimizer, when given) state from ``src``; return the iteration."""
    state = _load(src)
    restore_model(state, model, optimizer, src)
    return state["iteration"]


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write a full training checkpoint (the keys in the module docstring) atomically."""
    missing = [key for key in _TRAINING_KEYS if key not in state]
    assert not missing, f"training state lacks {missing}"
    _save({"format": FORMAT, **state}, path)


def load_training_state(path: str | Path, config: Config) -> dict[str, Any]:
    """Read a full training checkpoint saved by a run with the same model as ``config``.

    Raises :class:`CheckpointError` when the file is missing, truncated, not a training
    checkpoint, or was saved for a different model shape.
    """
    state = _load(path)
    missing = [key for key in _TRAINING_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint (lacks {', '.join(missing)})")
    saved = state["config"]
    try:  # keys added since the checkpoint was written take their defaults
        saved_model = ModelConfig(**saved.get("model", {}))
    except ValidationError as exc:
        raise CheckpointError(f"{path} holds an invalid model config: "
                              f"{exc.errors()[0]['msg']}") from None
    differ = model_differences(saved_model, config.model)
    if differ:
        raise CheckpointError(f"{path} was saved with a different model: {'; '.join(differ)}")
    saved_optim = saved.get("optim", {})
    saved_optimizer = saved_optim.get("optimizer", "adamw")
    if saved_optimizer != config.optim.optimizer:
        raise CheckpointError(f"{path} was saved with optim.optimizer={saved_optimizer!r} "
                              f"(config has {config.optim.optimizer!r}): its optimizer state "
                              f"cannot continue another optimizer")
    saved_own_rate = saved_optim.get("embedding_lr") is not None
    if saved_own_rate != (config.optim.embedding_lr is not None):
        how = "with" if saved_own_rate else "without"
        raise CheckpointError(f"{path} was saved {how} optim.embedding_lr: its optimizer state "
                              f"is grouped {how} a group for the embedding (set it as the run "
                              f"did, or start a new run.name)")
    return state


def model_differences(saved: ModelConfig, wanted: ModelConfig, *,
                      ignoring: frozenset[str] = frozenset()) -> list[str]:
    """``model.key=saved (config has wanted)`` for each model key in which a checkpoint's model
    and the configured one differ, ``d_ff`` compared as used (given or by default), so a run can
    say at once every reason its weights do not fit.

    >>> model_differences(ModelConfig(d_model=32), ModelConfig(d_model=64, d_ff=172))
    ['model.d_model=32 (config has 64)', 'model.d_ff=128 (config has 172)']
    """
    def fields(model: ModelConfig) -> dict[str, Any]:
        return {**model.model_dump(mode="json", exclude=set(ignoring)), "d_ff": model.ffn_width}

    theirs, ours = fields(saved), fields(wanted)
    return [f"model.{key}={theirs[key]!r} (config has {value!r})"
            for key, value in ours.items() if theirs[key] != value]


def load_model(path: str | Path, device: torch.device | str | None = None
               ) -> tuple[nn.Module, Config]:
    """A trained model and its config from a run directory, a checkpoint file or a weights file
    written by :func:`export_weights`, ready for inference (``eval()`` mode, on ``device``,
    default cpu).

    >>> model, config = load_model("runs/tinystories-cpu")  # doctest: +SKIP
    """
    from lmlab.nn import TransformerLM  # the model depends on config, not on checkpoints

    path = model_file(path)
    if path.suffix == ".safetensors":
        return _load_weights(path, device)
    state = _load(path)
    if "config" not in state:
        raise CheckpointError(f"{path} has no config: it was not saved by `lmlab train`")
    config = _config(state["config"], path)
    model = TransformerLM(config.model, device=device)
    restore_model(state, model, None, path)
    return model.eval(), config


def model_file(path: str | Path) -> Path:
    """The file that holds a run's model: ``path`` itself, or in a run directory its
    ``checkpoints/last.pt``, else its ``model.safetensors`` (an export or an import)."""
    path = Path(path)
    if not path.is_dir():
        return path
    checkpoint, weights = RunDir(path).checkpoint, path / "model.safetensors"
    return weights if not checkpoint.exists() and weights.exists() else checkpoint


def export_weights(model: nn.Module, config: Config, out: str | Path,
                   tokenizer_files: dict[str, str] | None = None) -> None:
    """Write ``model``'s weights to ``out`` as safetensors (atomically), ``config`` and, when
    given, the tokenizer's files (:meth:`Tokenizer.to_texts`) in its metadata, so the one file
    is all ``lmlab generate`` needs wherever it is copied.

    Tensor names are the model's state-dict names, each present: a tied embedding is stored
    under both of its names (safetensors holds no shared tensors, so the second is a copy, one
    vocab x d_model matrix more), and a plain ``load_file`` + ``load_state_dict`` finds every key.
    """
    metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(config.model_dump(mode="json"))}
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


def _load_weights(path: Path, device: torch.device | str | None) -> tuple[nn.Module, Config]:
    from lmlab.nn import TransformerLM

    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        with safetensors.safe_open(path, "pt") as weights:
            metadata = weights.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is truncated or not a safetensors file "
                              f"({first_line(exc)})") from None
    if metadata.get("format") != WEIGHTS_FORMAT or "config" not in metadata:
        raise CheckpointError(f"{path} holds no lmlab config: it was not written by "
                              f"`lmlab export`")
    config = _config(json.loads(metadata["config"]), path)
    model = TransformerLM(config.model, device=device)
    try:
        model.load_state_dict(safetensors.torch.load_file(path, device=str(device or "cpu")))
    except (RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"{path} does not fit its own config: "
                              f"{first_line(exc)[:300]}") from None
    return model.eval(), config


def _config(saved: dict[str, Any], path: Path) -> Config:
    try:
        return config_from_dict(saved, source=str(path))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def _save(obj: dict[str, Any], out: PathOrFile) -> None:
    if isinstance(out, str | os.PathLike):
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            try:  # through a Python file: a full disk is an OSError...
                torch.save(obj, f)
            except RuntimeError as exc:  # ...which torch's zip writer masks as it closes
                if isinstance(exc.__context__, OSError):
                    raise exc.__context__ from None
                raise
    else:
        torch.save(obj, out)


def _load(src: PathOrFile) -> dict[str, Any]:
    if isinstance(src, str | os.PathLike) and not Path(src).is_file():
        raise CheckpointError(f"checkpoint {src} does not exist")
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{src} is truncated or not a checkpoint ({first_line(exc)})"
                              ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{src} is not an lmlab checkpoint")
    return state


def restore_model(state: dict[str, Any], model: nn.Module,
                  optimizer: torch.optim.Optimizer | None, src: Any) -> None:
    """Load a checkpoint's model (and optimizer) state; a one-line error if they don't fit.

    The optimizer's state (moments, steps) comes from the checkpoint, but each group keeps the
    settings it was built with (``lr_scale``, weight decay, betas...): ``load_state_dict`` would
    bring back the saved ones, and a resume with a new ``optim.muon_lr`` would say it changed
    while still training at the old rate.
    """
    try:
        model.load_state_dict(state["model"])
        if optimizer is not None:
            settings = [{k: v for k, v in group.items() if k != "params"}
                        for group in optimizer.param_groups]
            optimizer.load_state_dict(state["optimizer"])
            for group, built in zip(optimizer.param_groups, settings, strict=True):
                group.update(built)
    except (RuntimeError, ValueError, KeyError) as exc:
        # torch's message is a header line, then one line per problem: report the first problem
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0]) if lines else type(exc).__name__
        raise CheckpointError(f"{src} does not fit this model: {detail[:300]}") from None
