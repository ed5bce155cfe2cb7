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

from lmlab.config import Config, flatten, format_value
from lmlab.errors import ConfigError
from lmlab.training.rundir import RunDir

FIXED = ("model.", "data.")
"""Key prefixes a resume may not change: the run would become another experiment."""
LENGTH_KEYS = ("train.max_steps", "train.max_tokens", "train.time_budget_s",
               "train.schedule_over_time", "optim.cosine_cycle_iters")
"""Keys that set when the run ends and how its schedule reaches that end."""
UNCOMPARED = ("run.resume", "train.world_size")
"""Keys that say how this session starts, not what the run is."""


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
    before = flatten(saved)
    after = flatten(config.model_dump(mode="json"))
    changed = [key for key in after
               if key in before and before[key] != after[key] and key not in UNCOMPARED]
    fixed = [key for key in changed if key.startswith(FIXED)]
    if fixed:
        raise ConfigError(f"cannot resume {config.run_dir} with another model or data: "
                          f"{_changes(fixed, before, after)} (start a new run.name instead)")
    length = [key for key in changed if key in LENGTH_KEYS]
    other = [key for key in changed if key not in LENGTH_KEYS]
    notes = []
    if length:
        notes.append(f"resuming with {_changes(length, before, after)}: the run now ends "
                     f"{describe_end(config)}")
    if other:
        notes.append(f"resuming with other settings: {_changes(other, before, after)}")
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


def _changes(keys: list[str], before: dict[str, Any], after: dict[str, Any]) -> str:
    return ", ".join(f"{key} {_shown(before[key])} -> {_shown(after[key])}" for key in keys)


def _shown(value: Any) -> str:
    return "none" if value is None else format_value(value)
