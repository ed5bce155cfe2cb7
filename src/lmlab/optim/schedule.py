"""Learning-rate schedules: linear warmup, then a decay from ``lr_max`` to ``lr_min`` (cosine,
linear, or warmup-stable-decay), then flat; :func:`learning_rate` is a run's rate at a step, and
:func:`check_schedule` what a run says about its schedule before it starts."""

import math
from collections.abc import Callable

from lmlab.config import Config
from lmlab.errors import ConfigError
from lmlab.text import plural

SHAPES = ("cosine", "linear", "wsd")


def cosine_schedule(
    t: int, lr_max: float, lr_min: float, warmup_iters: int, cosine_cycle_iters: int
) -> float:
    """Learning rate at step ``t``.

    Rises linearly from 0 to ``lr_max`` over ``warmup_iters`` steps, follows half a cosine down to
    ``lr_min`` at ``cosine_cycle_iters``, and stays at ``lr_min`` after that.

    >>> [round(cosine_schedule(t, 1.0, 0.1, 2, 4), 3) for t in range(6)]
    [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]
    """
    progress = (t - warmup_iters) / (cosine_cycle_iters - warmup_iters) if (
        cosine_cycle_iters > warmup_iters) else 1.0
    return scheduled(t, lr_max, lr_min, warmup_iters, progress)


def scheduled(t: int, lr_max: float, lr_min: float, warmup_iters: int, progress: float | None,
              shape: str = "cosine", decay_fraction: float = 0.2) -> float:
    """The rate at step ``t``: linear warmup from 0 over ``warmup_iters`` steps, then
    :func:`decayed` at ``progress`` (0 to 1) of the way to the end, or ``lr_max`` when no end is
    known (``progress`` None).

    >>> scheduled(1, 1.0, 0.0, 4, 0.0), scheduled(9, 1.0, 0.0, 4, None)
    (0.25, 1.0)
    """
    if t < warmup_iters:
        return lr_max * t / warmup_iters
    if progress is None:
        return lr_max
    return decayed(progress, lr_max, lr_min, shape, decay_fraction)


def decayed(progress: float, lr_max: float, lr_min: float, shape: str = "cosine",
            decay_fraction: float = 0.2) -> float:
    """The learning rate after warmup, ``progress`` of the way (0 to 1, clipped) to the end.

    ``cosine``: half a cosine (what :func:`cosine_schedule` follows); ``linear``: a straight line;
    ``wsd`` (warmup-stable-decay): ``lr_max`` until the last ``decay_fraction`` of the run, then
    a straight line down, so the rate stays high for most of the run and still ends annealed.

    >>> [round(decayed(p, 1.0, 0.0, "wsd", 0.5), 2) for p in (0.0, 0.5, 0.75, 1.0)]
    [1.0, 1.0, 0.5, 0.0]
    >>> decayed(0.5, 1.0, 0.1, "cosine") == cosine_schedule(3, 1.0, 0.1, 2, 4)
    True
    """
    progress = min(max(progress, 0.0), 1.0)
    if shape == "cosine":
        left = 0.5 * (1 + math.cos(math.pi * progress))
    elif shape == "linear":
        left = 1.0 - progress
    elif shape == "wsd":
        left = min(1.0, (1.0 - progress) / decay_fraction)
    else:
        raise ValueError(f"unknown schedule {shape!r} (valid: {', '.join(SHAPES)})")
    return lr_min + left * (lr_max - lr_min)


def learning_rate(config: Config, step: int, train_time_s: float) -> float:
    """A run's learning rate for optimizer step ``step`` (0-based), from its ``optim`` table.

    Warmup over ``optim.warmup_iters`` steps, then ``optim.schedule``'s decay down to
    ``optim.lr_min`` at ``cosine_cycle_iters`` (default: the last step) or, with
    ``train.schedule_over_time``, at the end of the time budget or at the last step, whichever
    comes first (so a time-budget run cut short by ``train.max_steps`` still ends annealed);
    constant ``lr_max`` when neither end is known.
    """
    optim = config.optim
    warmup = optim.warmup_iters
    progress: float | None
    if config.train.schedule_over_time:
        progress = train_time_s / config.train.time_budget_s  # type: ignore[operator]
        max_steps = config.max_steps
        if max_steps is not None and max_steps > warmup:
            progress = max(progress, (step - warmup) / (max_steps - warmup))
    else:
        cycle = config.cosine_cycle_iters
        progress = None if cycle is None else (
            (step - warmup) / (cycle - warmup) if cycle > warmup else 1.0)
    return scheduled(step, optim.lr_max, optim.lr_min, warmup, progress, optim.schedule,
                     optim.decay_fraction)


def check_schedule(config: Config, say: Callable[[str], None] | None = None) -> list[str]:
    """Check a run's schedule before it starts: a :class:`ConfigError` for one that cannot be
    meant, a one-line ``warning:`` for one that is merely odd (returned, and told to ``say``).

    Errors: ``optim.lr_min`` above ``optim.lr_max`` (the "decay" would climb); an explicit
    ``optim.cosine_cycle_iters`` not after the warmup (the rate would fall from ``lr_max`` to
    ``lr_min`` in one step; ignored, so unchecked, under ``train.schedule_over_time``); a warmup
    as long as the run or longer, when its length in steps is known (it would never train at
    ``lr_max``). Warning: a warmup over more than half the run. A run whose only limit is its
    time budget has no step count to check against until it runs, so only the first two apply.
    It is checked where a run starts, not when a config is read, so that runs saved before
    these rules still open for evaluation, export and reports.

    >>> from lmlab.config import load_config
    >>> words = ["data.train_path=t.bin", "data.valid_path=v.bin", "optim.warmup_iters=30"]
    >>> check_schedule(load_config(None, [*words, "train.max_steps=100"]))
    []
    >>> warned = check_schedule(load_config(None, [*words, "train.max_steps=40"]))
    >>> warned[0].startswith("warning: optim.warmup_iters (30) is more than half of the run's 40")
    True
    """
    optim, steps = config.optim, config.max_steps
    warmup = optim.warmup_iters
    if optim.lr_min > optim.lr_max:
        raise ConfigError(f"optim.lr_min ({optim.lr_min:g}) is above optim.lr_max "
                          f"({optim.lr_max:g}): the rate would climb as it decays; set "
                          f"optim.lr_min at most optim.lr_max")
    cycle = optim.cosine_cycle_iters
    if cycle is not None and cycle <= warmup and not config.train.schedule_over_time:
        raise ConfigError(f"optim.cosine_cycle_iters ({cycle}) is not after optim.warmup_iters "
                          f"({warmup}): the rate would drop from optim.lr_max to optim.lr_min "
                          f"the step warmup ends; make it larger, or unset it (none: the "
                          f"run's last step)")
    if steps is None or warmup == 0:
        return []
    length = plural(steps, "step") + (
        f" (train.max_tokens / {config.tokens_per_step:,} tokens a step)"
        if config.train.max_tokens is not None else " (train.max_steps)")
    if warmup >= steps:
        raise ConfigError(f"the run would end before its warmup does: optim.warmup_iters "
                          f"({warmup:,}) is not below its {length}, so it never trains at "
                          f"optim.lr_max; lower optim.warmup_iters or train longer")
    warnings = [f"warning: optim.warmup_iters ({warmup:,}) is more than half of the run's "
                f"{length}: most of it trains below optim.lr_max"] if 2 * warmup > steps else []
    if say is not None:
        for line in warnings:
            say(line)
    return warnings
