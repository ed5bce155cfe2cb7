"""Checkpoints: the functional save/load of CS336, and the trainer's full, resumable state.

A training checkpoint is one ``torch.save`` file (:attr:`RunDir.checkpoint`,
``<run>/checkpoints/last.pt``) holding::

    format      "lmlab-checkpoint-1"
    iteration   optimizer steps taken
    model       model.state_dict()            (the CS336 names: token_embeddings.weight, ...)
    optimizer   optimizer.state_dict()
    scaler      the float16 loss scaler's state_dict() (scale, growth count; empty when the run
                does not scale: lmlab.training.precision); older checkpoints lack it
    config      the run's resolved config, as JSON-able dicts
    rng         {"torch": ByteTensor, "cuda": [ByteTensor] | None}
    sampler     the data sampler's state (its generator: the data position)
    progress    lmlab.training.state.Progress: tokens seen, training and wall-clock seconds,
                running loss sums, what the divergence rules remember

With all of these a resumed run takes exactly the steps the uninterrupted run would have taken.
Files are written atomically and read with ``weights_only=True`` (no arbitrary code on load).
:func:`read_checkpoint` and :func:`checkpoint_config` read one back for others: the portable
model files of :mod:`lmlab.weights` (which also read a checkpoint's model) live apart from this
training state.
"""

import os
import pickle
from pathlib import Path
from typing import IO, Any

import torch
from pydantic import ValidationError
from torch import nn

from lmlab.atomic import atomic_path
from lmlab.config import Config, ModelConfig, config_from_dict, model_differences
from lmlab.errors import CheckpointError, ConfigError, first_line

FORMAT = "lmlab-checkpoint-1"
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
    state = read_checkpoint(src)
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
    state = read_checkpoint(path)
    missing = [key for key in _TRAINING_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} is not a training checkpoint (lacks {', '.join(missing)})")
    saved = state["config"]
    saved_model = saved_model_config(saved.get("model", {}), path)
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


def read_checkpoint(src: PathOrFile, *, mmap: bool = False) -> dict[str, Any]:
    """The dict an lmlab checkpoint holds (the keys in the module docstring; the functional
    :func:`save_checkpoint` writes no config), or a one-line :class:`CheckpointError`. With
    ``mmap`` (a path only) tensors stay on disk until used: cheap when only the config is read."""
    if isinstance(src, str | os.PathLike):
        _check_written_by_torch(Path(src))
    try:
        state = torch.load(src, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:  # torch's advice (weights_only=False) would run its code
        raise CheckpointError(f"{src} is not an lmlab checkpoint: it holds Python objects "
                              f"besides tensors, which lmlab does not load (loading them could "
                              f"run code in the file)") from None
    except (RuntimeError, EOFError, KeyError, ValueError):  # torch's text is about its internals
        raise CheckpointError(f"{src} is truncated or not a checkpoint (not a whole file that "
                              f"torch.save wrote)") from None
    except OSError as exc:
        raise CheckpointError(f"{src} cannot be read ({exc.strerror or first_line(exc)})"
                              ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{src} is not an lmlab checkpoint")
    return state


def _check_written_by_torch(path: Path) -> None:
    """A one-line error unless ``path`` exists and starts as a ``torch.save`` file does (a zip,
    or a pickle for the legacy format): anything else is refused before torch reads it."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({exc.strerror})") from None
    if not head:
        raise CheckpointError(f"{path} is empty: not a checkpoint")
    if head != b"PK\x03\x04" and head[0] != 0x80:
        raise CheckpointError(f"{path} is not a checkpoint or weights file (not a file that "
                              f"torch.save or `lmlab export` writes)")


def checkpoint_config(src: str | Path) -> Config:
    """The resolved config of the run that saved the training checkpoint ``src``: the data,
    schedule and precision a model was trained with, which the portable weights of
    :mod:`lmlab.weights` do not carry. Its tensors are not read (``mmap``)."""
    state = read_checkpoint(src, mmap=True)
    if "config" not in state:
        raise CheckpointError(f"{src} has no config: it was not saved by `lmlab train`")
    try:
        return config_from_dict(state["config"], source=str(src))
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def saved_model_config(table: dict[str, Any], src: Any) -> ModelConfig:
    """A saved ``model`` table as a :class:`ModelConfig`; keys added since it was written take
    their defaults, and an invalid table is a one-line :class:`CheckpointError` naming ``src``."""
    try:
        return ModelConfig(**table)
    except (ValidationError, TypeError) as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise CheckpointError(f"{src} holds an invalid model config: {detail}") from None


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
