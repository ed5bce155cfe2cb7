"""What a resumed run needs besides its weights and optimizer: the :class:`Progress` counters
and the random number generators' state, both saved in the checkpoint."""

from dataclasses import dataclass, field

import torch


@dataclass
class Progress:
    """Counters that survive a resume (saved in the checkpoint's ``progress``)."""

    tokens: int = 0
    train_time_s: float = 0.0
    """Seconds spent in training steps: what ``train.time_budget_s`` counts."""
    wall_time_s: float = 0.0
    """Seconds since the run began, evaluation and checkpointing included, across resumes."""
    first_loss: float | None = None
    """Loss of the first step: the reference for divergence."""
    recent_losses: list[float] = field(default_factory=list)
    best_smoothed_loss: float | None = None
    """The last steps' losses and the best of their median since warmup, for the divergence
    rules (:mod:`lmlab.training.divergence`)."""
    unlogged: list[list[float]] = field(default_factory=list)
    """``[loss, fraction of the budget spent]`` of each step since the last log, as a checkpoint
    taken between logs saw them (the session keeps them on the device)."""

    @classmethod
    def from_saved(cls, saved: dict) -> "Progress":
        """The counters of a checkpoint; one written before per-step losses were kept holds
        only their sum, which becomes that many steps of the mean loss, judged as early in the
        run (fraction 0)."""
        saved = dict(saved)
        total, count = saved.pop("loss_sum", 0.0), saved.pop("loss_steps", 0)
        if count:
            saved["unlogged"] = [[total / count, 0.0]] * count
        return cls(**saved)


def rng_state() -> dict:
    """The CPU and (when present) CUDA generators' states, for the checkpoint's ``rng``."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
