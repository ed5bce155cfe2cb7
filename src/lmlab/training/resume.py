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

from collections.abc import Callable
from datetime import UTC, datetime
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
from lmlab.training.rundir import RunDir


def resume_wanted(config: Config, run: RunDir, say: Callable[[str], None],
                  may_write: bool = True) -> bool:
    """Whether to continue from the run's checkpoint, per ``run.resume``.

    With ``auto``, a run directory that holds metrics but no checkpoint (a run killed before its
    first checkpoint) starts afresh; its metrics log is first moved aside with a timestamp (by
    the process that ``may_write``: rank 0 under torchrun), and ``say`` is told where, so
    recorded metrics are never dropped silently.
    """
    has_checkpoint = run.checkpoint.exists()
    if config.run.resume == "must" and not has_checkpoint:
        raise ConfigError(f"cannot resume: {run.checkpoint} does not exist")
    if config.run.resume == "never" and run.exists():
        raise ConfigError(f"run directory {run.root} already exists: resume it with --resume "
                          f"(or run.resume=auto), or choose another run.name")
    if may_write and not has_checkpoint and run.metrics.exists():  # only `auto` gets here
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = run.metrics.with_name(f"metrics-before-{stamp}.jsonl")
        run.metrics.rename(kept)
        say(f"run.resume=auto: {run.root} has no checkpoint to resume from, so the run starts "
            f"afresh (its earlier metrics are kept in {kept})")
    return has_checkpoint and config.run.resume != "never"


def resume_notes(saved: dict[str, Any], config: Config) -> list[str]:
    """One line per kind of change from the ``saved`` config (the checkpoint's) to ``config``.

    Raises :class:`ConfigError` naming the keys when the model or the data differ.
    """
    changed = diff(saved, config, ignoring=LAUNCH_KEYS)
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
