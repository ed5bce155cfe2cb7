"""Learning-rate schedule: linear warmup, then cosine decay, then flat."""

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
