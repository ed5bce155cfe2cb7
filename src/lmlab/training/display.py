"""What a training run shows while it trains: a progress bar on a terminal, or a progress line
every :data:`PROGRESS_LINE_S` seconds for a log (``--no-progress``, a sweep, a redirected run).

The bar counts steps of ``max_steps`` or, for a run with a time budget only, seconds of it; both
show the loss, the tokens per second and, when the device's peak is known, the MFU.
"""

import time
from collections.abc import Callable

from tqdm import tqdm

from lmlab.config import Config
from lmlab.progress import bar_disabled

PROGRESS_LINE_S = 30.0
"""Seconds between progress lines when no bar is drawn: often enough to show a run is alive,
rarely enough that a sweep's log stays readable."""


class ProgressDisplay:
    """The bar, or the progress lines for ``say`` when no bar is drawn (``enabled`` is False or
    stderr is not a terminal). Used as a context manager: the bar is closed on exit."""

    def __init__(self, config: Config, step: int, train_time_s: float, enabled: bool,
                 say: Callable[[str], None]) -> None:
        self.config, self.say = config, say
        self.bar = _progress_bar(config, step, train_time_s, enabled)
        self.last_line = time.perf_counter()

    def __enter__(self) -> "ProgressDisplay":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def advance(self, step_seconds: float) -> None:
        """One step done: it took ``step_seconds`` (what a time-budget bar counts)."""
        self.bar.update(1 if self.config.max_steps is not None else step_seconds)

    def show(self, *, step: int, fraction: float, train_time_s: float, loss: float, lr: float,
             tokens_per_s: float, mfu: float | None) -> None:
        """The numbers of the latest log: on the bar, or as a line when one is due."""
        self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}",
                             **({"mfu": f"{mfu:.1%}"} if mfu is not None else {}))
        if self.bar.disable and time.perf_counter() - self.last_line >= PROGRESS_LINE_S:
            self.say(progress_line(step, self.config.max_steps, fraction, train_time_s, loss,
                                   lr, tokens_per_s, mfu))
            self.last_line = time.perf_counter()


def progress_line(step: int, max_steps: int | None, fraction: float, train_time_s: float,
                  loss: float, lr: float, tokens_per_s: float, mfu: float | None) -> str:
    """What a progress bar shows, as one line for a log.

    >>> progress_line(1200, 4000, 0.3, 82.0, 3.4123, 2.9e-3, 12345.0, None)
    'step 1,200/4,000 (30%)  loss 3.412  lr 2.90e-03  12,345 tok/s  ETA 3m11s'
    """
    # The last step of a time budget ends past it (a step is not cut short): at most 100%.
    fraction = min(fraction, 1.0)
    of = f"/{max_steps:,}" if max_steps is not None else ""
    eta = ""
    if 0 < fraction < 1:
        left = round(train_time_s * (1 - fraction) / fraction)
        eta = f"  ETA {left // 60}m{left % 60:02d}s"
    shown_mfu = f"  MFU {mfu:.1%}" if mfu is not None else ""
    return (f"step {step:,}{of} ({fraction:.0%})  loss {loss:.3f}  "
            f"lr {lr:.2e}  {tokens_per_s:,.0f} tok/s{shown_mfu}{eta}")


def _progress_bar(config: Config, step: int, train_time_s: float, enabled: bool) -> tqdm:
    """Steps done of max_steps or, for a time-budget-only run, seconds of the budget (drawn only
    when ``enabled`` and stderr is a terminal: its ``disable`` says whether it is)."""
    if config.max_steps is not None:
        return tqdm(total=config.max_steps, initial=step, unit="step",
                    disable=bar_disabled(enabled), dynamic_ncols=True)
    return tqdm(total=config.train.time_budget_s, initial=train_time_s, unit="s",
                disable=bar_disabled(enabled), dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}{postfix}]")
