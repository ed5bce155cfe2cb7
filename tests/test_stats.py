"""Comparing two points over seeds: the t-tests and intervals against SciPy's, paired only when
both points ran the same seed indices, the seeds a power of 0.8 needs against textbook values
and a simulation, and the verdicts where no test is possible (one seed, no spread, diverged)."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lmlab.experiments.arms import baseline_and_arms
from lmlab.experiments.stats import compare, format_p, seeds_needed
from lmlab.experiments.summary import (
    BEST,
    over_seeds,
    seed_values,
    versus_best,
    versus_best_lines,
    write_summary,
)

A = {0: 3.412, 1: 3.377, 2: 3.401, 3: 3.395}
B = {0: 3.441, 1: 3.398, 2: 3.436, 3: 3.409}  # seed by seed 0.014-0.035 above A
C = {0: 3.405, 1: 3.420, 2: 3.384, 3: 3.401}  # no consistent gap to A


def test_same_seed_indices_are_compared_seed_by_seed_like_scipys_paired_test() -> None:
    reference = stats.ttest_rel(list(A.values()), list(B.values()))
    interval = reference.confidence_interval(0.95)
    result = compare(A, B)
    assert result.test == "paired"
    assert result.p == pytest.approx(reference.pvalue, rel=1e-12)
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))
    assert result.diff == pytest.approx(np.mean(list(A.values())) - np.mean(list(B.values())))
    assert reference.pvalue < 0.05
    assert result.verdict == f"better (p = {format_p(reference.pvalue)}, paired)"
    assert compare(B, A).verdict.startswith("worse (p = ")


def test_other_seed_indices_are_compared_by_welchs_test_like_scipys() -> None:
    shifted = {seed + 4: value for seed, value in B.items()}
    reference = stats.ttest_ind(list(A.values()), list(B.values()), equal_var=False)
    interval = reference.confidence_interval(0.95)
    result = compare(A, shifted)
    assert result.test == "Welch"
    assert result.p == pytest.approx(reference.pvalue, rel=1e-12)
    assert (result.ci_low, result.ci_high) == pytest.approx((interval.low, interval.high))
    # the paired test sees what Welch's cannot: the shared seed's part of the spread cancels
    assert compare(A, B).p < result.p


def test_a_difference_the_test_cannot_tell_says_how_many_seeds_would() -> None:
    a, c = np.array(list(A.values())), np.array(list(C.values()))
    reference = stats.ttest_rel(a, c)
    assert reference.pvalue > 0.05
    result = compare(A, C)
    differences = a - c
    needed = seeds_needed(differences.mean(), [differences.std(ddof=1)])
    assert result.seeds_needed == needed and needed > 4
    assert result.verdict == (f"not distinguishable with 4 seeds (p = {format_p(reference.pvalue)}"
                              f", paired); about {needed} seeds each would resolve a difference "
                              "of this size")


@pytest.mark.parametrize(("effect", "spreads", "seeds"), [
    (1.0, [1.0], 10), (0.5, [1.0], 34),  # paired, d_z = 1.0 and 0.5 (G*Power: 10 and 34)
    (0.5, [1.0, 1.0], 64), (0.8, [1.0, 1.0], 26),  # two groups, d = 0.5 and 0.8 (Cohen's table)
    (0.4, [0.5, 0.5], 26),  # only the effect size counts: d = 0.8 again
])
def test_seeds_for_power_match_the_textbook_tables(effect: float, spreads: list[float],
                                                    seeds: int) -> None:
    assert seeds_needed(effect, spreads) == seeds


def _simulated_power(n: int, diff: float, spreads: tuple[float, float], trials: int) -> float:
    """How often Welch's test at 0.05 finds ``diff`` with n seeds a side, by simulation."""
    rng = np.random.default_rng(0)
    a = rng.normal(diff, spreads[0], size=(trials, n))
    b = rng.normal(0.0, spreads[1], size=(trials, n))
    return float(np.mean(stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue < 0.05))


def test_welchs_seed_count_reaches_the_power_in_a_simulation() -> None:
    spreads = (0.02, 0.05)  # unequal spreads: Welch's case
    n = seeds_needed(0.05, list(spreads))
    assert 5 < n < 40
    assert _simulated_power(n, 0.05, spreads, 20_000) == pytest.approx(0.8, abs=0.025)
    assert _simulated_power(n - 1, 0.05, spreads, 20_000) < 0.8


def test_no_difference_needs_more_seeds_than_the_cap() -> None:
    assert seeds_needed(0.0, [1.0]) is None
    result = compare({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 1.0, 2: 3.0})  # same mean
    assert "more than 1000 seeds each would be needed" in result.verdict


def test_one_seed_and_no_spread_give_no_test_and_no_nan() -> None:
    one = compare({0: 3.1}, {0: 3.2})
    assert (one.test, one.p, one.verdict) == (None, None, "1 seed: no test")
    assert one.diff == pytest.approx(-0.1)
    tie = compare({0: 3.1, 1: 3.2}, {0: 3.1, 1: 3.2})
    assert (tie.diff, tie.p, tie.verdict) == (0.0, None, "identical over 2 seeds: a tie")
    constant = compare({0: 3.0, 1: 3.0}, {1: 3.5, 2: 3.5})  # Welch, neither side spreads
    assert constant.p is None and constant.verdict.startswith("no spread over seeds: no test")
    for result in (one, tie, constant):
        assert "nan" not in result.verdict and "inf" not in result.verdict


def test_diverged_and_non_finite_seeds_are_left_out_and_said_so() -> None:
    a = {0: 3.41, 1: 3.38, 2: None, 3: 3.40}
    b = {0: 3.44, 1: 3.40, 2: 3.43, 3: float("nan")}
    result = compare(a, b)
    reference = stats.ttest_rel([3.41, 3.38], [3.44, 3.40])  # seeds 0 and 1 finished on both
    assert result.test == "paired" and result.p == pytest.approx(reference.pvalue)
    assert result.verdict.endswith("; seeds 2, 3 left out (unfinished on one side or both)")
    welch = compare({0: 3.41, 1: 3.38, 2: None}, {1: 3.44, 2: 3.40, 3: 3.43}, ("it", "the best"))
    assert welch.test == "Welch" and welch.verdict.endswith("left out (not finished): seed 2 of it")
    gone = compare({0: None, 1: float("inf")}, {0: 3.4, 1: 3.5})
    assert (gone.diff, gone.verdict.split(";")[0]) == (None, "no finished seed to compare")


def test_p_values_are_never_rounded_across_the_threshold() -> None:
    assert format_p(0.0499) == "0.0499" and format_p(0.0501) == "0.050"
    assert format_p(0.2134) == "0.21"


def test_summary_rows_keep_each_seeds_value_and_compare_with_the_best(tmp_path: Path) -> None:
    def row(values: dict[int, float | None]) -> dict:
        return over_seeds([{"status": "finished" if value else "diverged",
                            "final_val_loss": value, "seed": seed}
                           for seed, value in values.items()])
    rows = [row(B), row(A), row({5: 3.5, 6: 3.6})]
    assert seed_values(rows[1]) == A
    worse, best, other = versus_best(rows)
    assert best is BEST and worse.test == "paired" and other.test == "Welch"
    assert worse.p == pytest.approx(stats.ttest_rel(list(B.values()), list(A.values())).pvalue)
    write_summary(tmp_path, [r | c.fields("vs_best") for r, c in ((rows[0], worse),)])
    back = json.loads((tmp_path / "summary.json").read_text())[0]
    assert seed_values(back) == B  # read back, the seeds still pair
    assert back["vs_best_p"] == worse.p and back["vs_best_test"] == "paired"
    assert "vs_best_ci_low" in (tmp_path / "summary.csv").read_text().splitlines()[0]


def test_the_best_row_is_one_whose_every_seed_finished() -> None:
    """A point with a diverged seed is compared with the best, never chosen as it, whatever
    its other seeds reached: the rule of the search and the edge of stability."""
    steady = over_seeds([{"status": "finished", "final_val_loss": value, "seed": seed}
                         for seed, value in A.items()])
    lucky = over_seeds([{"status": "finished", "final_val_loss": 1.0, "seed": 0},
                        {"status": "diverged", "final_val_loss": None, "seed": 1}])
    versus_lucky, versus_steady = versus_best([lucky, steady])
    assert versus_steady is BEST
    assert versus_lucky.diff == pytest.approx(1.0 - np.mean(list(A.values())))
    assert versus_best([lucky]) == [None]  # no point finished every seed: no best
    assert [line.split(":")[0] for line in versus_best_lines(
        [lucky | {"run": "lucky"}, steady | {"run": "steady"}])] == [
        "final val loss against the best point, steady (difference, 95% interval)", "  lucky"]


def test_each_arm_is_compared_with_the_baseline_at_each_rate_and_at_its_best() -> None:
    def point(norm: str, lr: float, values: dict[int, float]) -> tuple[dict, dict]:
        row = over_seeds([{"status": "finished", "final_val_loss": value, "seed": seed}
                          for seed, value in values.items()])
        return {"model.norm": norm, "optim.lr_max": lr}, row
    arm_best = {seed: value + 0.3 for seed, value in C.items()}
    points = [point("none", 1e-3, arm_best), point("rms", 1e-3, B), point("rms", 3e-3, A),
              point("none", 3e-3, {0: 9.0, 1: 8.0, 2: 9.5, 3: 8.5})]
    baseline, rows = baseline_and_arms(points, ["model.norm", "optim.lr_max"],
                                       {"model.norm": "rms"})
    assert baseline == "norm=rms"
    assert [(row.arm, row.where) for row in rows] == [
        ("norm=none", "lr_max=0.001"), ("norm=none", "lr_max=0.003"),
        ("norm=none", "own best: 0.001 vs 0.003")]
    reference = stats.ttest_rel(list(arm_best.values()), list(A.values()))
    assert rows[2].comparison.p == pytest.approx(reference.pvalue)
    gap = np.mean(list(arm_best.values())) - np.mean(list(A.values()))
    assert rows[2].comparison.diff == pytest.approx(gap)
    assert baseline_and_arms(points[1:3], ["optim.lr_max"], {}) is None  # only the rate varies


def test_an_arm_several_keys_from_the_baseline_is_compared_one_key_at_a_time() -> None:
    """Post-norm at 8 layers, the baseline pre-norm at 4: against pre-norm at 8 layers (the
    norm's effect at that depth) and post-norm at 4 (the depth's), never against the baseline,
    which differs in both; an arm with no series one key away falls back to the baseline."""
    def point(position: str, layers: int, values: dict[int, float]) -> tuple[dict, dict]:
        row = over_seeds([{"status": "finished", "final_val_loss": value, "seed": seed}
                          for seed, value in values.items()])
        return {"model.norm_position": position, "model.num_layers": layers}, row
    pre_8 = {seed: value + 0.5 for seed, value in A.items()}
    points = [point("pre", 4, A), point("pre", 8, pre_8), point("post", 4, B), point("post", 8, C)]
    keys = ["model.norm_position", "model.num_layers"]
    base = {"model.norm_position": "pre", "model.num_layers": 4}
    baseline, rows = baseline_and_arms(points, keys, base)
    assert baseline == "norm_position=pre num_layers=4"
    assert [(row.arm, row.against) for row in rows] == [
        ("norm_position=pre num_layers=8", baseline),
        ("norm_position=post num_layers=4", baseline),
        ("norm_position=post num_layers=8", "norm_position=pre num_layers=8"),
        ("norm_position=post num_layers=8", "norm_position=post num_layers=4")]
    at_depth = stats.ttest_rel(list(C.values()), list(pre_8.values()))
    assert rows[2].comparison.p == pytest.approx(at_depth.pvalue)
    _, alone = baseline_and_arms([points[0], points[3]], keys, base)
    assert [(row.arm, row.against) for row in alone] == [
        ("norm_position=post num_layers=8", baseline)]
