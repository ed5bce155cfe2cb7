"""What resuming a run may change, and what it must say.

::

    run.resume + the run directory ─► resume_wanted ─► resume / start / start afresh (old log kept)
    checkpoint's config vs the new one ─► resume_notes ─► error (model, data) or one line per change

A resume continues the saved run exactly, so the config it resumes with is compared with the one
the checkpoint was saved with: another model or other data would make the steps that follow
belong to a different experiment (an error); a new length or schedule is allowed but stated
(``resuming with train.max_steps 100 -> none: the run now ends after 600 s of training``), and so
is any other change (a new learning rate, evaluation interval...), so nothing changes silently.
"""

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmlab.config import (
    DATA_KEYS,
    LAUNCH_KEYS,
    LENGTH_KEYS,
    MODEL_KEYS,
    Change,
    Config,
    diff,
    format_value,
    has_role,
)
from lmlab.errors import ConfigError
from lmlab.training.rundir import RunDir, check_place


def resume_wanted(config: Config, run: RunDir, say: Callable[[str], None],
                  may_write: bool = True) -> bool:
    """Whether to continue from the run's checkpoint, per ``run.resume``.

    With ``auto``, a run directory that holds metrics but no checkpoint (a run killed before its
    first checkpoint) starts afresh; its metrics log is first moved aside with a timestamp (by
    the process that ``may_write``: rank 0 under torchrun), and ``say`` is told where, so
    recorded metrics are never dropped silently. A run directory that would share a folder with
    another run or a sweep is an error (:func:`lmlab.training.rundir.check_place`).
    """
    check_place(run.root)
    has_checkpoint = run.checkpoint.exists()
    if config.run.resume == "must" and not has_checkpoint:
        start = ("the run stopped before its first checkpoint: start it afresh with "
                 "run.resume=auto instead" if run.exists() else "start it without resuming")
        raise ConfigError(f"cannot resume: {run.checkpoint} does not exist ({start})")
    if config.run.resume == "never" and run.exists():
        what = ("resume it with --resume (or run.resume=auto)" if has_checkpoint else
                "it has no checkpoint to resume from (the run stopped before its first): start "
                "it afresh with run.resume=auto")
        raise ConfigError(f"run directory {run.root} already exists: {what}, or choose another "
                          f"run.name")
    if may_write and not has_checkpoint and run.metrics.exists():  # only `auto` gets here
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = run.metrics.with_name(f"metrics-before-{stamp}.jsonl")
        run.metrics.rename(kept)
        say(f"run.resume=auto: {run.root} has no checkpoint to resume from, so the run starts "
            f"afresh (its earlier metrics are kept in {kept})")
    return has_checkpoint and config.run.resume != "never"


def resume_notes(saved: dict[str, Any], config: Config) -> list[str]:
    """One line per kind of change from the ``saved`` config (the checkpoint's) to ``config``.

    Raises :class:`ConfigError` naming the keys when the model or the data differ. A token file
    is compared by where it lies, not how its path is spelt: the checkpoint's relative path from
    the folder its run was started in (:meth:`RunDir.locate`), the new one from this folder, so
    a resume from another folder is not "other data".
    """
    changed = diff(_located(saved, config), config, ignoring=LAUNCH_KEYS, same=_file)
    fixed = [change for change in changed if has_role(change.key, MODEL_KEYS + DATA_KEYS)]
    if fixed:
        raise ConfigError(f"cannot resume {config.run_dir} with another model or data: "
                          f"{_changes(fixed)} (start a new run.name instead)")
    length = [change for change in changed if has_role(change.key, LENGTH_KEYS)]
    other = [change for change in changed if not has_role(change.key, LENGTH_KEYS)]
    notes = []
    if length:
        notes.append(f"resuming with {_changes(length)}: the run now ends "
                     f"{describe_end(config)}")
    if other:
        notes.append(f"resuming with other settings: {_changes(other)}")
    return notes


def _located(saved: dict[str, Any], config: Config) -> dict[str, Any]:
    """The checkpoint's config with its data paths absolute, as its run found them."""
    run = saved.get("run", {})
    saved_dir = Path(run.get("runs_dir", "runs")) / run.get("name", config.run.name)
    data = RunDir(config.run_dir).locate_data(saved.get("data", {}), saved_dir)
    return {**saved, "data": data}


def _is_path(key: str, value: Any) -> bool:
    return has_role(key, DATA_KEYS) and key.endswith("_path") and isinstance(value, str)


def _file(key: str, value: Any) -> Any:
    """A data path as the file it names (from this folder; links followed)."""
    return os.path.realpath(value) if _is_path(key, value) else value


def describe_end(config: Config) -> str:
    """When ``config``'s run stops, in words: ``at step 300``, ``after 600 s of training``, or
    both with ``whichever comes first``."""
    ends = []
    if config.max_steps is not None:
        tokens = f" ({config.train.max_tokens:,} tokens)" if config.train.max_tokens else ""
        ends.append(f"at step {config.max_steps:,}{tokens}")
    if config.train.time_budget_s is not None:
        ends.append(f"after {config.train.time_budget_s:g} s of training")
    return " or ".join(ends) + (", whichever comes first" if len(ends) > 1 else "")


def _changes(changes: list[Change]) -> str:
    return ", ".join(f"{c.key} {_shown(c.before)} -> {_shown(c.after)}" for c in changes)


def _shown(value: Any) -> str:
    return "none" if value is None else format_value(value)
