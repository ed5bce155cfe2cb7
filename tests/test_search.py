"""The learning-rate search: its decisions on synthetic objectives (a bowl whose optimum lies
outside the first rates, a cap, an edge of divergence, the refinement), its rounds planned from
run directories written without training (names after lr scaling, a re-run that trains
nothing), the dry run's cap, the edges in the report and the batch-size figure, and a tiny real
sweep."""

import json
import math
import re
from pathlib import Path

import pytest

from lmlab.errors import ConfigError
from lmlab.experiments.compare import by_point
from lmlab.experiments.planning import plan
from lmlab.experiments.plot import load_runs, plot_edges
from lmlab.experiments.report import write_report
from lmlab.experiments.rounds import decisions, next_round
from lmlab.experiments.runner import run_sweep
from lmlab.experiments.search import Result, decide, value_at
from lmlab.experiments.stability import edges
from lmlab.experiments.sweep import SearchSpec, Sweep
from lmlab.training.rundir import RunDir
from tests.helpers.fake_runs import fake_run
from tests.helpers.lmlab_cli import cli
from tests.helpers.tiny_runs import PRESET, STEPS_ONLY, tiny_run, tiny_sweep

LR = "optim.lr_max"


def bowl(optimum: float, diverges_from: float = math.inf):
    """A loss that is a parabola in log(rate) around ``optimum``; rates from ``diverges_from``
    up diverge."""
    def result(rate: float) -> Result:
        if rate >= diverges_from:
            return Result(None, diverged=True)
        return Result(2.0 + math.log(rate / optimum) ** 2, diverged=False)
    return result


def search(spec: SearchSpec, objective) -> tuple[dict[int, Result], list[str]]:
    """Every round of one series against ``objective``: the results and the final state and note."""
    results: dict[int, Result] = {}
    for _ in range(50):
        decision = decide(spec, results)
        if not decision.add:
            return results, [decision.state, decision.note]
        assert not set(decision.add) & set(results), "a value is never tried twice"
        results.update({i: objective(value_at(spec, i)) for i in decision.add})
    raise AssertionError("the search did not end")


def rates(spec: SearchSpec, results: dict[int, Result]) -> list[float]:
    return sorted(value_at(spec, i) for i in results)


def nearest_on_grid(start: float, factor: float, optimum: float) -> float:
    """The grid value (start times a whole power of factor) closest to optimum in log."""
    grid = [start * factor ** k for k in range(-20, 21)]
    return min(grid, key=lambda rate: abs(math.log(rate / optimum)))


@pytest.mark.parametrize("optimum", [4e-5, 2e-4, 3.1e-3, 0.05, 0.8])
def test_a_bowl_whose_optimum_lies_outside_the_first_rates_is_found_and_bracketed(
        optimum: float) -> None:
    spec = SearchSpec(key=LR, start=3e-3, factor=3, max_points=12)
    results, (state, note) = search(spec, bowl(optimum))
    tried = rates(spec, results)
    best = min(results, key=lambda i: results[i].loss)
    assert value_at(spec, best) == pytest.approx(nearest_on_grid(3e-3, 3, optimum), rel=1e-3)
    assert tried[0] < value_at(spec, best) < tried[-1]  # a finished value on each side
    assert state == "settled" and f"best {value_at(spec, best):g}" in note
    assert {0.001, 0.003, 0.009} <= set(tried)  # the start and its neighbours first
    ratios = [b / a for a, b in zip(tried, tried[1:], strict=False)]
    assert ratios == pytest.approx([3] * len(ratios), rel=1e-3)  # a factor apart, no gaps


def test_a_series_that_hits_the_cap_says_so_instead_of_settling() -> None:
    spec = SearchSpec(key=LR, start=3e-3, factor=3, max_points=4)
    results, (state, note) = search(spec, bowl(1e-6))
    assert len(results) == 4 and rates(spec, results)[0] == pytest.approx(3e-3 / 9, rel=1e-3)
    assert state == "capped"
    assert note == "cap of 4 values reached: the best, 0.0003333, has no value below it"


def test_the_edge_of_divergence_is_located_a_factor_above_the_largest_finished_rate() -> None:
    spec = SearchSpec(key=LR, start=3e-3, factor=3, max_points=10, edge=True)
    results, (state, _) = search(spec, bowl(3e-3, diverges_from=0.1))
    finished = [value_at(spec, i) for i, r in results.items() if r.finished]
    diverged = [value_at(spec, i) for i, r in results.items() if r.diverged]
    assert state == "settled"
    assert max(finished) == pytest.approx(0.081) and diverged == [pytest.approx(0.243)]
    without = SearchSpec(key=LR, start=3e-3, factor=3, max_points=10)
    assert not any(r.diverged for r in search(without, bowl(3e-3, 0.1))[0].values())


def test_capped_before_any_rate_diverged_names_what_it_lacks() -> None:
    spec = SearchSpec(key=LR, start=3e-3, factor=3, max_points=5, edge=True)
    _, (state, note) = search(spec, bowl(3e-3))
    assert (state, note) == ("capped", "cap of 5 values reached: nothing up to 0.081 diverged")


def test_refine_adds_the_geometric_midpoint_towards_the_better_neighbour() -> None:
    spec = SearchSpec(key=LR, start=1e-2, factor=4, max_points=8, refine=True)
    results, (state, _) = search(spec, bowl(6e-3))  # between 2.5e-3 and 1e-2, nearer 1e-2
    middle = [i for i in results if i % 2]
    assert state == "settled" and len(middle) == 1
    assert value_at(spec, middle[0]) == pytest.approx(math.sqrt(1e-2 * 2.5e-3), rel=1e-3)
    mirrored, _ = search(spec, bowl(1.6e-2))  # nearer the rate above
    (above,) = [i for i in mirrored if i % 2]
    assert value_at(spec, above) == pytest.approx(math.sqrt(1e-2 * 4e-2), rel=1e-3)


def test_a_series_where_everything_diverges_searches_lower_and_an_unended_run_waits() -> None:
    spec = SearchSpec(key=LR, start=1.0, factor=10, max_points=9)
    results, (state, _) = search(spec, bowl(1e-3, diverges_from=1e-2))
    assert state == "settled" and min(results, key=lambda i: results[i].loss or 99) == -6
    waiting = decide(spec, {-2: Result(2.0, False), 0: None, 2: Result(3.0, False)})
    assert (waiting.add, waiting.state) == ((), "stuck")
    assert "1 did not end" in waiting.note


def test_a_seed_that_diverged_makes_its_rate_diverged() -> None:
    spec = SearchSpec(key=LR, start=1e-2, factor=3, max_points=5)
    first = {-2: Result(3.0, False), 0: Result(2.0, False), 2: Result(None, True)}
    assert decide(spec, first).state == "settled"  # bracketed below by 1e-2/3, above by divergence


@pytest.mark.parametrize(("table", "message"), [
    ('key = "optim.lr_max"\nstart = 0', "search.start: Input should be greater than 0"),
    ('key = "optim.lr_max"\nstart = 1e-3\nfactor = 1', "search.factor: Input should be greater"),
    ('key = "optim.lr_max"\nstart = 1e-3\nmax_points = 2', "search.max_points: Input should be"),
    ('key = "optim.lr_max"\nstart = 1e-3\nstep = 2',
     r"unknown key 'search.step' \(valid: key, start, factor, max_points, edge, refine\)"),
])
def test_a_bad_search_table_is_one_line_naming_the_key(tmp_path: Path, table: str,
                                                       message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(f'config = "tinystories-cpu"\n[search]\n{table}\n')
    with pytest.raises(ConfigError, match=message):
        Sweep.from_file(path)


def finish(points, loss_of) -> None:
    """Write each point's run as the trainer would leave it, without training: ``loss_of(lr)``
    is its final val loss, or None for a run that diverged."""
    for point in points:
        run = point.run_dir
        run.root.mkdir(parents=True, exist_ok=True)
        run.config.write_text(json.dumps(point.config.model_dump(mode="json")))
        loss = loss_of(point.config.optim.lr_max)
        run.metrics.write_text(json.dumps({"step": 30, "tokens": 3840, "wall_time_s": 1.0,
                                           "val/loss": loss if loss is not None else 9.0}) + "\n")
        run.set_status("finished" if loss is not None else "diverged")


def test_the_rounds_grow_the_plan_and_a_rerun_replays_them_without_training(
        tmp_path: Path) -> None:
    spec = {"key": LR, "start": 3e-3, "factor": 3, "max_points": 6, "edge": True}
    sweep = tiny_sweep(tmp_path, grid={"train.batch_size": ["8", "32"]}, lr_scaling="sqrt",
                       fixed_tokens=True, search=spec, seeds=2)
    current = plan(sweep)
    current.root.mkdir(parents=True)
    (current.root / "sweep.json").write_text(json.dumps(current.describe()))  # as the runner does
    assert sorted(current.searched) == ["batch_size-32", "batch_size-8"]
    for point in current.points:  # named by the rate it trains at, after the sqrt scaling
        assert f"lr_max-{point.config.optim.lr_max:g}" in point.name
    assert {p.group for p in current.points if p.series == "batch_size-32"} == {
        "batch_size-32__lr_max-0.002", "batch_size-32__lr_max-0.006",
        "batch_size-32__lr_max-0.018"}  # the base batch is 8: 2x the rate at batch 32
    loss = bowl(1e-3, diverges_from=0.05)
    rounds, events = 0, []
    new = current.points
    while new:
        finish(new, lambda lr: loss(lr).loss)
        new = next_round(current, events.append)
        rounds += 1
    states = {series: d.state for series, d in decisions(current).items()}
    assert states == {"batch_size-8": "settled", "batch_size-32": "settled"}
    assert "search (batch_size-8): settled: best 0.001, with a value tried on each side and a " \
           "diverging value above it" in events
    names = {p.name for p in current.points}
    replayed = plan(sweep)
    replay_events: list[str] = []
    while next_round(replayed, replay_events.append):
        assert all(p.run_dir.status in ("finished", "diverged") for p in replayed.points)
    assert {p.name for p in replayed.points} == names and replay_events == events
    assert len(events) == 2 * rounds
    described = replayed.describe()["search"]
    assert described["key"] == LR and described["values"]["batch_size-8"][:3] == [
        0.001, 0.003, 0.009]
    status = RunDir(current.root / "batch_size-8__lr_max-0.001__seed-0").status
    assert status == "finished"


def test_a_searched_key_cannot_also_be_gridded(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, grid={LR: ["1e-3"]}, search={"key": LR, "start": 1e-3})
    with pytest.raises(ConfigError, match="optim.lr_max is searched, so it cannot also be"):
        plan(sweep)


def test_names_after_lr_scaling_state_the_rate_that_ran(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, grid={"train.batch_size": ["1", "4", "32"], LR: ["3e-3"]},
                       lr_scaling="sqrt")
    points = plan(sweep).points  # base batch 8
    assert [p.name for p in points] == ["batch_size-1__lr_max-0.001061",
                                        "batch_size-4__lr_max-0.002121",
                                        "batch_size-32__lr_max-0.006"]
    assert [p.config.optim.lr_max for p in points] == [0.001061, 0.002121, 0.006]
    assert [p.config.optim.lr_min for p in points] == [0.0003536, 0.0007071, 0.002]


def test_the_dry_run_states_the_cap_and_the_most_a_search_may_cost(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    words = [*tiny_run(tmp_path), *STEPS_ONLY, "train.peak_flops=1e9"]
    code, out, err = cli(capsys, "sweep", str(PRESET), *words, "--name", "s", "--search",
                         "optim.lr_max=1e-2:x2", "--search-cap", "5", "--search-edge",
                         "--seeds", "2", "--dry-run", "--no-measure")
    assert code == 0, err
    assert out.splitlines()[0].endswith(": 6 runs (3 points x 2 seeds), 6 to run")
    assert "  lr_max-0.005__seed-0: 30 steps" in out and "  lr_max-0.02__seed-1: 30 steps" in out
    (line,) = [line for line in out.splitlines() if line.startswith("search ")]
    assert line.startswith("search optim.lr_max from 0.01, x2: at most 5 values a series (the "
                           "cap), 1 series: later rounds add at most 4 runs for 1 series still "
                           "searching, ~")
    assert re.search(r"searching, ~[\d.]+ (s|min); at most ~[\d.]+ (s|min) in all$", line), line


@pytest.mark.parametrize(("args", "message"), [
    (["--search", "optim.lr_max"], "--search 'optim.lr_max' is not of the form section.key=START"),
    (["--search", "optim.lr_max=1e-3:3"], "is not of the form"),
    (["--search", "optim.lr_max=-1"], "search.start: Input should be greater than 0"),
    (["--search-cap", "4"], "--search-cap, --search-edge and --search-refine need a search"),
    (["--search", "optim.lr_max=1e-3", "--grid", "optim.lr_max=1e-3"], "is searched, so it"),
])
def test_bad_search_options_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         args: list[str], message: str) -> None:
    code, _, err = cli(capsys, "sweep", str(PRESET), *tiny_run(tmp_path), *args, "--dry-run",
                       "--no-measure")
    assert code != 0 and err.startswith("error: ") and message in err and err.count("\n") == 1


def _edge_runs(root: Path) -> None:
    """A batch-size search left as fake runs: at batch 4 the best (1e-3) is the lowest rate
    tried; at batch 64 it is bracketed and 0.1 diverged."""
    for batch, curve in ((4, {1e-3: 2.0, 3e-3: 2.5, 1e-2: 3.0}),
                         (64, {3e-3: 2.6, 1e-2: 2.2, 3e-2: 2.4, 0.1: None})):
        for lr, final in curve.items():
            status = "finished" if final is not None else "diverged"
            losses = [5.0, 4.0, 3.0, final - 0.1] if final is not None else [5.0, 9.0]
            path = fake_run(root, f"batch_size-{batch}__lr_max-{lr:g}", status, losses, lr_max=lr)
            config = json.loads((path / "config.json").read_text())
            (path / "config.json").write_text(json.dumps({**config,
                                                          "train": {"batch_size": batch}}))
    (root / "sweep.json").write_text(json.dumps({"config": "cpu-base.toml", "overrides": [],
                                                 "base": {}, "points": []}))


def test_the_report_maps_each_edge_and_draws_best_and_diverging_against_batch_size(
        tmp_path: Path) -> None:
    root = tmp_path / "runs" / "batch_size"
    _edge_runs(root)
    small, large = edges(by_point(load_runs([root])), [LR, "train.batch_size"])
    assert (small.best[0], small.at_edge_of_search, small.diverging) == (1e-3, "below", None)
    assert (large.best[0], large.at_edge_of_search) == (1e-2, None)
    assert (large.largest_finished, large.diverging) == (3e-2, 0.1)
    assert small.describe().startswith("Edge of stability (batch_size=4): best lr 0.001 (final "
                                       "val loss 2.000 (1 seed)), at the edge of the search (no "
                                       "rate below it was tried")
    assert "smallest diverging lr 0.1: 10x the best, 3.33x the largest that finished (0.03)" \
        in large.describe()
    text = write_report(tmp_path / "runs", tmp_path / "out" / "R.md", samples=False).read_text()
    assert ("| batch_size=4 | 0.001 | 2.000 (1 seed) | 0.01 | none diverged |  |  | at the edge "
            "of the search (nothing tried below) |") in text
    assert ("| batch_size=64 | 0.01 | 2.200 (1 seed) | 0.03 | 0.1 | 10x | 3.33x | bracketed |"
            in text)
    assert "(batch_size_edge.png)" in text
    figure = plot_edges([small, large], "train.batch_size")
    ax = figure.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    best_filled, best_hollow = (c.get_offsets().tolist() for c in ax.collections[:2])
    assert best_filled == [[64, 1e-2]] and best_hollow == [[4, 1e-3]]
    diverging = ax.lines[0]
    assert diverging.get_xdata().tolist() == [64] and diverging.get_ydata().tolist() == [0.1]
    alone = plot_edges([small], "train.batch_size").axes[0]  # the legend names what is drawn
    assert alone.get_legend_handles_labels()[1] == ["best rate (at the edge of the search)"]
    assert [text.get_text() for text in alone.texts] == ["no rate diverged in this search"]
    name = "post_norm --variant cpu-depth, 3 seeds"  # long enough to reach a centred legend
    titled = plot_edges([small, large], "train.batch_size", title=name)
    titled.canvas.draw()
    (title,) = [text for text in titled.texts if text.get_text() == name]
    assert not title.get_window_extent().overlaps(titled.legends[0].get_window_extent())


@pytest.mark.slow
def test_a_tiny_real_search_brackets_and_a_rerun_trains_nothing(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, "train.max_steps=12", "train.eval_interval=6",
                       search={"key": LR, "start": 1e-2, "factor": 10, "max_points": 5,
                               "edge": True})
    current = plan(sweep)
    events: list[str] = []
    rows = run_sweep(current, on_event=events.append)
    tried = sorted(p.config.optim.lr_max for p in current.points)
    assert tried[:3] == [1e-3, 1e-2, 1e-1] or tried[0] < 1e-3  # the first round, then more
    assert [row["run"] for row in rows] == [p.group for p in current.points]
    assert all(row["status"] in ("finished", "diverged") for row in rows)
    (decision,) = decisions(current).values()
    assert decision.state in ("settled", "capped") and any(e.startswith("search: ") for e in events)
    described = json.loads((current.root / "sweep.json").read_text())["search"]
    assert sorted(described["values"][""]) == tried
    again: list[str] = []
    run_sweep(plan(sweep), on_event=again.append)
    assert not any(e.endswith(": starting") for e in again)  # every round replayed, none trained
    assert [e for e in again if e.startswith("search")] == [
        e for e in events if e.startswith("search")]


def test_the_floor_that_follows_the_searched_rate_splits_no_series(tmp_path: Path) -> None:
    """A searched optim.lr_max carries optim.lr_min at the base's ratio: the sweep and the
    report read one series with one edge, not one series per floor."""
    sweep = tiny_sweep(tmp_path, search={"key": LR, "start": 3e-3, "factor": 3, "max_points": 5,
                                         "edge": True})
    current = plan(sweep)
    current.root.mkdir(parents=True)
    loss = bowl(3e-3, diverges_from=0.05)
    new = current.points
    while new:
        finish(new, lambda lr: loss(lr).loss)
        new = next_round(current)
    floors = {p.config.optim.lr_min / p.config.optim.lr_max for p in current.points}
    assert len({p.config.optim.lr_min for p in current.points}) > 1
    assert max(floors) == pytest.approx(min(floors), rel=1e-3)
    runs = load_runs([current.root])
    assert current.varied == [LR]
    (edge,) = edges(by_point(runs), current.varied)
    assert edge.series == "" and edge.best[0] == 3e-3 and edge.diverging == 0.081


@pytest.mark.parametrize("key", ["model.d_model", "model.norm", "train.batch_size", "optim.nope"])
def test_a_search_over_a_key_that_is_not_a_real_number_is_refused(tmp_path: Path,
                                                                  key: str) -> None:
    """A midpoint a factor's square root away is no whole number, and a name has none."""
    sweep = tiny_sweep(tmp_path, search={"key": key, "start": 64, "factor": 2})
    with pytest.raises(ConfigError, match=f"search.key {key}: a search tries values a factor "
                       "apart, so it needs a real-valued config key such as optim.lr_max"):
        plan(sweep)
