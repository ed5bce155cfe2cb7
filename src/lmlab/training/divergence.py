"""When a run has diverged: the rules a user recognises, judged on the loss of every step.

The rules read each optimizer step's training loss in turn (the loop hands them over at every
log, all the steps since the last one), so their windows are counted in steps and the verdict
does not depend on ``train.log_interval``. A run is ``diverged`` when a step's loss

1. is not finite (NaN or inf);
2. exceeds ``train.diverge_factor`` times the first step's loss (a blow-up at the start);
3. after warmup, climbs back and stays far above its best: the smoothed loss (the median of
   the last :data:`WINDOW` steps' losses) rises more than ``train.diverge_rise`` nats above the
   lowest smoothed loss seen since warmup. A spike of fewer than half a window of steps,
   however high, does not move the median and passes; a climb that stays does not;
4. from :data:`LEARNED_BY_WARMUPS` warmups, :data:`LEARNED_BY_MIN_STEPS` steps and
   :data:`LEARNED_BY_FRACTION` of the run on, is still no better than a unigram model of the
   training data (smoothed loss above
   :data:`UNIGRAM_FRACTION` of the data's unigram entropy) *and no longer falling* (the smoothed
   loss fell by less than :data:`STALL_FRACTION` of the unigram loss over the last window of
   steps): the model has learned nothing beyond token frequencies and has stopped learning, as
   runs at absurd learning rates end. Every model passes the unigram loss, and many rest there a
   while before they learn how tokens follow each other (so a run at batch 1 sat at it for
   hundreds of steps), hence the wait for a third of the run, and a run at a small rate still on
   its way down past it does not count.

An evaluation is checked too (:meth:`DivergenceRules.check_evaluation`): a validation loss
that is not finite or above ``train.diverge_factor`` times the first training loss means the
model blew up after its last logged training loss (a no-norm model's last update can do that:
it logged 3.61 at its last step and scored 32.5 on validation after it).

What the rules remember (first loss, the recent steps' losses, the best smoothed loss) is part
of the run's progress, saved in every checkpoint, so a resumed run judges exactly as an
uninterrupted one.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

WINDOW = 100
"""Steps whose median loss is the smoothed loss: a spike of up to 49 steps leaves it."""
LEARNED_BY_WARMUPS = 3
LEARNED_BY_MIN_STEPS = 100
LEARNED_BY_FRACTION = 1 / 3
"""Of the run's step or time budget: before it, a run at the unigram loss may still be resting on
the plateau that every model crosses."""
UNIGRAM_FRACTION = 0.95
"""A run whose smoothed loss stays above this fraction of the unigram loss has learned (almost)
nothing but token frequencies."""
STALL_FRACTION = 0.01
"""Falling by less than this fraction of the unigram loss over a window of steps is a stall."""


class LossHistory(Protocol):
    """What the rules remember between logs: the run's
    :class:`~lmlab.training.state.Progress`, saved in every checkpoint."""

    first_loss: float | None
    """The first step's loss."""
    recent_losses: list[float]
    """The losses of the last two :data:`WINDOW` s of steps."""
    best_smoothed_loss: float | None
    """The lowest smoothed loss since warmup."""


@dataclass(frozen=True)
class DivergenceRules:
    """The thresholds of the rules, from the config and the training data."""

    factor: float
    """``train.diverge_factor``."""
    rise: float
    """``train.diverge_rise``, in nats."""
    warmup_steps: int
    unigram_loss: float | None
    """Cross-entropy (nats per token) of the training tokens' own frequencies; None: rule 4 off."""

    def check_steps(self, losses: Sequence[float], fractions: Sequence[float], last_step: int,
                    history: LossHistory) -> str | None:
        """:meth:`check` each step's loss in order, the last one at ``last_step``, each with the
        fraction of the budget spent after it; the first reason found, or None."""
        first_step = last_step - len(losses) + 1
        for step, loss, fraction in zip(range(first_step, last_step + 1), losses, fractions,
                                        strict=True):
            reason = self.check(loss, step, history, fraction)
            if reason is not None:
                return reason
        return None

    def check(self, loss: float, step: int, history: LossHistory,
              fraction_done: float = 1.0) -> str | None:
        """Update ``history`` with the loss of optimizer step ``step`` (``fraction_done`` of the
        run's budget spent after it); return why the run diverged (one line naming the rule and
        the step), or None while it trains."""
        if not math.isfinite(loss):
            return f"train/loss is {loss} at step {step}"
        first = history.first_loss
        if first is not None and loss > self.factor * first:
            return (f"train/loss {loss:.3f} at step {step} is over {self.factor:g}x the first "
                    f"step's {first:.3f} (train.diverge_factor)")
        recent = history.recent_losses[:] = [*history.recent_losses, loss][-2 * WINDOW:]
        smoothed = statistics.median(recent[-WINDOW:])
        if step <= self.warmup_steps:
            return None
        best = history.best_smoothed_loss
        best = history.best_smoothed_loss = smoothed if best is None else min(best, smoothed)
        if smoothed > best + self.rise:
            return (f"smoothed train/loss {smoothed:.3f} at step {step} climbed "
                    f"{smoothed - best:.2f} nats above its best {best:.3f} "
                    f"(train.diverge_rise {self.rise:g})")
        learned_by = max(LEARNED_BY_WARMUPS * self.warmup_steps, LEARNED_BY_MIN_STEPS)
        unigram = self.unigram_loss
        if (unigram is None or step < learned_by or fraction_done < LEARNED_BY_FRACTION
                or smoothed <= UNIGRAM_FRACTION * unigram or len(recent) < 2 * WINDOW):
            return None
        fallen = statistics.median(recent[:WINDOW]) - smoothed
        if fallen < STALL_FRACTION * unigram:
            return (f"smoothed train/loss {smoothed:.3f} at step {step} is no better than a "
                    f"unigram model of the training data ({unigram:.3f}) and has stopped "
                    f"falling ({fallen:+.3f} over the last {WINDOW} steps): it has learned only "
                    f"token frequencies")
        return None

    def check_evaluation(self, val_loss: float, step: int, history: LossHistory) -> str | None:
        """Why the model evaluated at ``step`` has diverged, or None: its validation loss is not
        finite or far above where training started."""
        if not math.isfinite(val_loss):
            return f"val/loss is {val_loss} at step {step}"
        first = history.first_loss
        if first is not None and val_loss > self.factor * first:
            return (f"val/loss {val_loss:.3f} at step {step} is over {self.factor:g}x the first "
                    f"step's train/loss {first:.3f} (train.diverge_factor): the model blew up "
                    f"after its last logged step")
        return None
