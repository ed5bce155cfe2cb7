"""Two points compared over their seeds: the difference of means with a 95% confidence interval,
a t-test's p-value, and how many seeds would settle a difference that the test cannot.

Runs with the same seed index share their initialisation and data order, so two points that ran
the same seed indices are compared seed by seed (a paired t-test); otherwise by Welch's t-test.
Every number comes from SciPy's distributions here, and nowhere else in lmlab: the summary, the
report and the sweep's printed table all call :func:`compare`.
"""

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05
"""The two-sided significance level: a difference is called at p < 0.05."""
POWER = 0.8
"""The power at which :func:`seeds_needed` says a difference would be resolved."""
MAX_SEEDS = 1000
"""The most seeds per point :func:`seeds_needed` looks at; beyond it, "more than 1000"."""
PAIRED, WELCH = "paired", "Welch"


@dataclass(frozen=True)
class Comparison:
    """Point ``a`` against point ``b`` on a result where lower is better (a loss, bits per
    byte): ``diff`` is mean(a) - mean(b) over the seeds compared (None when a side has none)."""

    diff: float | None
    ci_low: float | None
    """The 95% confidence interval of ``diff`` (None without a test)."""
    ci_high: float | None
    p: float | None
    """The two-sided p-value (None without a test: one seed, or no spread over seeds)."""
    test: str | None
    """:data:`PAIRED` or :data:`WELCH`, or None when no test was possible."""
    seeds_needed: int | None
    """For a difference the test could not tell: the seeds per point at which it would have
    power 0.8 (None beyond :data:`MAX_SEEDS`, or when the test told it, or made none)."""
    verdict: str
    """``better (p = 0.003, paired)``, ``worse (...)``, or why the two are not distinguished."""

    def fields(self, prefix: str) -> dict[str, Any]:
        """The comparison as summary columns: ``<prefix>``, ``<prefix>_ci_low``... ."""
        return {prefix: self.diff, f"{prefix}_ci_low": self.ci_low,
                f"{prefix}_ci_high": self.ci_high, f"{prefix}_p": self.p,
                f"{prefix}_test": self.test, f"{prefix}_verdict": self.verdict}

    def interval(self) -> str:
        """``+0.1801 [+0.0912, +0.2690]``: the difference and its 95% interval, as tables show
        it ('' when there is no difference)."""
        if self.diff is None:
            return ""
        if self.ci_low is None or self.ci_high is None:
            return f"{self.diff:+.4f}"
        return f"{self.diff:+.4f} [{self.ci_low:+.4f}, {self.ci_high:+.4f}]"


def compare(a: Mapping[int, float | None], b: Mapping[int, float | None],
            names: tuple[str, str] = ("the first", "the second")) -> Comparison:
    """Compare two points given as ``{seed index: result}`` (None or a non-finite value for a
    seed that did not finish: it is left out, and the verdict says so, calling the points by
    ``names``). Paired when both ran the same seed indices, Welch's t-test otherwise.

    >>> compare({0: 3.10, 1: 3.20, 2: 3.15}, {0: 3.30, 1: 3.42, 2: 3.33}).verdict
    'better (p = 0.0033, paired)'
    """
    kept_a, kept_b = _finite(a), _finite(b)
    paired = set(a) == set(b)
    if paired:
        kept_a = kept_b = sorted(set(kept_a) & set(kept_b))
    note = _left_out(a, b, kept_a, kept_b, names)
    x = np.array([a[seed] for seed in kept_a], dtype=float)
    y = np.array([b[seed] for seed in kept_b], dtype=float)
    if len(x) == 0 or len(y) == 0:
        return Comparison(None, None, None, None, None, None, "no finished seed to compare" + note)
    diff = float(x.mean() - y.mean())
    if min(len(x), len(y)) < 2:
        return Comparison(diff, None, None, None, None, None, "1 seed: no test" + note)
    spreads = [float(np.std(x - y, ddof=1))] if paired else [float(np.std(x, ddof=1)),
                                                               float(np.std(y, ddof=1))]
    if max(spreads) <= 1e-12 * max(np.abs(x).max(), np.abs(y).max()):  # float rounding
        verdict = (f"identical over {_seeds(len(x), len(y))}: a tie" if diff == 0 else
                   f"no spread over seeds: no test (every seed {diff:+.4f})")
        return Comparison(diff, None, None, None, None, None, verdict + note)
    with warnings.catch_warnings():  # near-identical values: SciPy warns, the library is quiet
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(x, y) if paired else stats.ttest_ind(x, y, equal_var=False)
        interval = result.confidence_interval(1 - ALPHA)
    test = PAIRED if paired else WELCH
    p = float(result.pvalue)
    shown = f"p = {format_p(p)}" if p >= 0.001 else "p < 0.001"
    if p < ALPHA:
        verdict, needed = f"{'better' if diff < 0 else 'worse'} ({shown}, {test})", None
    else:
        needed = seeds_needed(diff, spreads)
        settle = (f"about {needed} seeds each would resolve" if needed is not None else
                  f"more than {MAX_SEEDS} seeds each would be needed to resolve")
        verdict = (f"not distinguishable with {_seeds(len(x), len(y))} ({shown}, {test}); "
                   f"{settle} a difference of this size")
    return Comparison(diff, float(interval.low), float(interval.high), p, test, needed,
                      verdict + note)


def seeds_needed(diff: float, spreads: Sequence[float], alpha: float = ALPHA,
                 power: float = POWER) -> int | None:
    """The smallest number of seeds per point at which a two-sided t-test at ``alpha`` finds a
    true difference ``diff`` with probability ``power`` (None above :data:`MAX_SEEDS`).

    One spread is the paired design's: the standard deviation of the per-seed differences, the
    test's statistic a noncentral t with n - 1 degrees of freedom and noncentrality
    ``|diff| / sd * sqrt(n)``. Two spreads are the points' own standard deviations, for Welch's
    test with n seeds on each side, approximated (as planning tools do) by a noncentral t with
    noncentrality ``|diff| / sqrt((sd_a² + sd_b²) / n)`` and the Welch-Satterthwaite degrees of
    freedom ``(n - 1)(sd_a² + sd_b²)² / (sd_a⁴ + sd_b⁴)``: with equal spreads, the two-sample
    t-test's ``2n - 2``. The observed spreads stand in for the true ones.

    >>> seeds_needed(1.0, [1.0]), seeds_needed(0.5, [1.0, 1.0])
    (10, 64)
    """
    n = np.arange(2, MAX_SEEDS + 1, dtype=float)
    if len(spreads) == 1:
        df, scale = n - 1, spreads[0] / np.sqrt(n)
    else:
        variances = np.square(np.asarray(spreads, dtype=float))
        df = (n - 1) * variances.sum() ** 2 / np.square(variances).sum()
        scale = np.sqrt(variances.sum() / n)
    noncentrality = abs(diff) / scale
    critical = stats.t.ppf(1 - alpha / 2, df)
    reached = (stats.nct.sf(critical, df, noncentrality)
               + stats.nct.cdf(-critical, df, noncentrality)) >= power
    return int(n[np.argmax(reached)]) if reached.any() else None


def format_p(p: float) -> str:
    """A p-value to two significant digits, or more where two would cross :data:`ALPHA`
    (``0.0499`` is not written ``0.050``).

    >>> format_p(0.2134), format_p(0.0499), format_p(0.003), format_p(0.795)
    ('0.21', '0.0499', '0.0030', '0.80')
    """
    text = f"{p:#.2g}"
    digits = 2
    while (float(text) < ALPHA) != (p < ALPHA) and digits < 6:
        digits += 1
        text = f"{p:#.{digits}g}"
    return text


def _finite(values: Mapping[int, float | None]) -> list[int]:
    return sorted(seed for seed, value in values.items()
                  if value is not None and math.isfinite(value))


def _left_out(a: Mapping[int, Any], b: Mapping[int, Any], kept_a: Sequence[int],
              kept_b: Sequence[int], names: tuple[str, str]) -> str:
    """What the verdict adds when seeds were left out: ``; seed 2 left out (unfinished on one
    side or both)`` when paired, ``; left out (not finished): seed 2 of the best`` otherwise."""
    if set(a) == set(b):
        dropped = sorted(set(a) - set(kept_a))
        return (f"; {'seed' if len(dropped) == 1 else 'seeds'} {_listed(dropped)} left out "
                "(unfinished on one side or both)") if dropped else ""
    left = [f"seed {seed} of {name}" for values, kept, name in ((a, kept_a, names[0]),
                                                                (b, kept_b, names[1]))
            for seed in sorted(set(values) - set(kept))]
    return f"; left out (not finished): {', '.join(left)}" if left else ""


def _listed(seeds: Sequence[int]) -> str:
    return ", ".join(map(str, seeds))


def _seeds(n_a: int, n_b: int) -> str:
    """``3 seeds`` when both sides compared as many, else ``3 and 2 seeds``."""
    return f"{n_a} seeds" if n_a == n_b else f"{n_a} and {n_b} seeds"
