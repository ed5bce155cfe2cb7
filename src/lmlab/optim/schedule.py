"""Learning-rate schedules: linear warmup, then a decay from ``lr_max`` to ``lr_min`` (cosine,
linear, or warmup-stable-decay), then flat."""

import math


def cosine_schedule(
    t: int, lr_max: float, lr_min: float, warmup_iters: int, cosine_cycle_iters: int
) -> float:
    """Learning rate at step ``t``.

    Rises linearly from 0 to ``lr_max`` over ``warmup_iters`` steps, follows half a cosine down to
    ``lr_min`` at ``cosine_cycle_iters``, and stays at ``lr_min`` after that.

    >>> [round(cosine_schedule(t, 1.0, 0.1, 2, 4), 3) for t in range(6)]
    [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]
    """
    if t < warmup_iters:
        return lr_max * t / warmup_iters
    if t >= cosine_cycle_iters:
        return lr_min
    progress = (t - warmup_iters) / (cosine_cycle_iters - warmup_iters)
    return lr_min + 0.5 * (1 + math.cos(math.pi * progress)) * (lr_max - lr_min)


SHAPES = ("cosine", "linear", "wsd")


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
