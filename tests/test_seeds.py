"""Seeds and noise: `lmlab sweep --seeds`, the spread in the summary and report, the band in the
plot, `--dry-run`, and the edge of stability of an lr sweep."""

import json
import re
import statistics
from pathlib import Path

import pytest
from scipy import stats

from lmlab.experiments.compare import by_point, varied_keys
from lmlab.experiments.planning import plan
from lmlab.experiments.plot import load_runs, plot_runs
from lmlab.experiments.runner import run_sweep
from lmlab.experiments.stability import edges
from lmlab.experiments.stats import format_p
from lmlab.experiments.summary import NO_BPB, over_seeds
from lmlab.training.rundir import Run, RunDir
from tests.helpers.fake_runs import fake_run
from tests.helpers.lmlab_cli import cli
from tests.helpers.tiny_runs import PRESET, STEPS_ONLY, tiny_run, tiny_sweep, write_tokens


def seeded_run(root: Path, name: str, status: str, losses: list[float], seed: int, *,
               data: dict[str, str] | None = None, **optim: float) -> Path:
    """A fake run (see tests/test_plot.py) whose config also names its train.seed."""
    path = fake_run(root, name, status, losses, data=data, **optim)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "train": {"seed": seed}}))
    return path


@pytest.mark.slow
def test_every_point_runs_with_each_seed_and_the_summary_gives_the_spread(
        tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, "train.max_steps=12", "train.eval_interval=6", seeds=2,
                       grid={"optim.lr_max": ["1e-3", "1e-2"]})
    rows = run_sweep(plan(sweep))
    root = tmp_path / "runs" / "s"
    names = [f"lr_max-{lr}__seed-{seed}" for lr in ("0.001", "0.01") for seed in (0, 1)]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(names)
    runs = [Run.load(root / name) for name in names]
    assert [run.config["train.seed"] for run in runs] == [0, 1, 0, 1]
    finals = [run.summary()["final_val_loss"] for run in runs]
    assert finals[0] != finals[1]  # the seeds really differ
    assert [row["run"] for row in rows] == ["lr_max-0.001", "lr_max-0.01"]
    first = rows[0]
    assert (first["seeds"], first["status"], first["steps"]) == (2, "finished", 12)
    assert first["final_val_loss"] == pytest.approx(statistics.fmean(finals[:2]))
    assert first["final_val_loss_std"] == pytest.approx(statistics.stdev(finals[:2]))
    assert (first["final_val_loss_min"], first["final_val_loss_max"]) == (min(finals[:2]),
                                                                          max(finals[:2]))
    assert json.loads((root / "summary.json").read_text()) == rows
    assert "train.seed" not in plan(sweep).varied

    again: list[str] = []
    run_sweep(plan(sweep), on_event=again.append)
    assert again == [f"{name}: finished, skipped" for name in names]


def test_dry_run_lists_the_planned_runs_with_their_budget_and_trains_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    words = [*tiny_run(tmp_path), *STEPS_ONLY, "train.max_steps=12"]
    code, out, _ = cli(capsys, "sweep", str(PRESET), *words, "--name", "s", "--grid",
                       "optim.lr_max=1e-3,1e-2", "--seeds", "3", "--dry-run")
    assert code == 0, out
    assert "sweep " in out and "6 runs (2 points x 3 seeds), 6 to run" in out
    assert re.search(r"lr_max-0.01__seed-2: 12 steps, 1,536 tokens, ~\d+ s  \[pending: run\]",
                     out), out
    assert "in all: 9,216 tokens, ~" in out and " for the 6 runs to go" in out
    assert not (tmp_path / "runs" / "s").exists()


def test_seeds_cannot_be_swept_by_hand_with_seeds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train.seed cannot vary in a sweep with --seeds"):
        plan(tiny_sweep(tmp_path, seeds=2, grid={"train.seed": ["1", "2"]}))
    with pytest.raises(ValueError, match="seeds must be a whole number >= 1"):
        plan(tiny_sweep(tmp_path, seeds=0, grid={"optim.lr_max": ["1e-3"]}))


def test_spread_over_seeds_counts_finished_seeds_only() -> None:
    row = over_seeds([{"status": "finished", "final_val_loss": 3.0, "steps": 10},
                      {"status": "diverged", "final_val_loss": 7.0, "steps": 4}])
    assert row["status"] == "1 finished, 1 diverged" and row["seeds"] == 2
    assert (row["final_val_loss"], row["final_val_loss_std"]) == (3.0, None)  # one: no spread
    assert row["val_bpb"] is None and row["steps"] == 7.0
    assert row["final_val_loss_seeds"] == {"0": 3.0, "1": None}  # by position without seeds


def test_the_plot_draws_a_seeds_mean_in_a_band(tmp_path: Path) -> None:
    root = tmp_path / "s"
    seeded_run(root, "lr_max-0.001__seed-0", "finished", [5.0, 4.0, 3.0, 2.0], 0)
    seeded_run(root, "lr_max-0.001__seed-1", "finished", [5.0, 4.4, 3.4, 2.4], 1)
    seeded_run(root, "lr_max-0.1__seed-0", "finished", [5.0, 4.8, 4.6, 4.4], 0, lr_max=1e-1)
    runs = load_runs([root])
    assert [len(point) for point in by_point(runs)] == [2, 1]  # runs in name order
    (ax,) = plot_runs(runs, metrics=["train/loss"]).axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["lr_max=0.001 (2 seeds)", "lr_max=0.1"]
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([5.0, 4.2, 3.2, 2.2])
    (band,) = ax.collections  # the min-max band of the two seeds
    low, high = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    assert (low, high) == pytest.approx((2.0, 5.0))


def test_runs_with_their_own_copy_of_the_same_token_files_are_seeds_of_one_point(
        tmp_path: Path) -> None:
    """`bench/cpu_quality.py --out runs/q$seed` tokenizes the same text into each run's folder:
    the data paths differ, the data does not."""
    def quickstart_run(folder: str, seed: int, text: str) -> Path:
        data = tmp_path / folder / "data"
        data.mkdir(parents=True)
        paths = {f"{split}_path": str(write_tokens(data / f"{split}.bin", [1, 2, 3, 4], 16,
                                                   source_path=f"/texts/{text}-{split}.txt"))
                 for split in ("train", "valid")}
        return seeded_run(tmp_path / folder, "tinystories-cpu", "finished", [5.0, 4.0], seed,
                          data=paths)

    same = [quickstart_run("q0", 0, "stories"), quickstart_run("q1", 1, "stories")]
    other = quickstart_run("q-other", 0, "owt")
    runs = load_runs(same)
    assert [len(point) for point in by_point(runs)] == [2]
    assert varied_keys([run.config for run in runs]) == ["train.seed"]
    (ax,) = plot_runs(runs, metrics=["train/loss"]).axes
    assert [line.get_label() for line in ax.get_lines()] == ["tinystories-cpu (2 seeds)"]

    runs = load_runs([*same, other])
    assert [len(point) for point in by_point(runs)] == [2, 1]
    assert varied_keys([run.config for run in runs]) == ["data.train_path", "data.valid_path",
                                                     "train.seed"]
    (tmp_path / "q1" / "data" / "train.bin").unlink()  # unreadable: compared by its path
    assert [len(point) for point in by_point(load_runs(same))] == [1, 1]


def test_identical_runs_are_not_taken_for_seeds(tmp_path: Path) -> None:
    fake_run(tmp_path, "a", "finished", [5.0, 4.0])
    fake_run(tmp_path, "b", "finished", [5.0, 4.1])  # same config, same (default) seed
    assert [len(point) for point in by_point(load_runs([tmp_path]))] == [1, 1]


def lr_sweep(root: Path) -> None:
    """Fake runs of an lr sweep with two seeds: 1e-2 best, 3e-2 diverging in one seed."""
    curves = {1e-3: ([5, 4, 3.5, 3.2], [5, 4, 3.6, 3.3]),
              1e-2: ([5, 3, 2.5, 2.1], [5, 3, 2.4, 2.0]),
              3e-2: ([5, 3, 2.6, 2.3], [5, 9.0])}
    for lr, (first, second) in curves.items():
        seeded_run(root, f"lr_max-{lr:g}__seed-0", "finished", first, 0, lr_max=lr)
        seeded_run(root, f"lr_max-{lr:g}__seed-1", "finished" if len(second) > 2 else "diverged",
                   second, 1, lr_max=lr)


def test_the_edge_of_stability_of_an_lr_sweep(tmp_path: Path) -> None:
    lr_sweep(tmp_path / "lr")
    runs = load_runs([tmp_path / "lr"])
    (edge,) = edges(by_point(runs), ["optim.lr_max"])
    best_lr, best_row = edge.best
    assert best_lr == 1e-2 and best_row["final_val_loss"] == pytest.approx(2.15)  # val = +0.1
    assert edge.diverging == 3e-2
    assert edge.describe().startswith("Edge of stability: best lr 0.01 (final val loss 2.150 ± "
                                      "0.071); smallest diverging lr 0.03: 3x the best")
    assert edges(by_point(runs), ["model.d_model"]) == []  # not an lr sweep


def test_the_report_gives_spreads_noise_and_the_edge(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    lr_sweep(runs / "lr")
    RunDir(runs / "lr" / "lr_max-0.03__seed-1").set_status("diverged", "train/loss 9.000 at step "
                                                            "2 is over 2x the first step's 5.000")
    out = tmp_path / "docs" / "EXPERIMENTS.md"
    code, _, err = cli(capsys, "report", str(runs), "--out", str(out), "--no-samples")
    assert code == 0, err
    text = out.read_text()
    assert "| point | lr_max | seeds | status | final val loss |" in text
    assert "| `lr_max-0.01` | 0.01 | 2 | finished | 2.150 ± 0.071 |" in text
    assert "| `lr_max-0.03` | 0.03 | 2 | 1 finished, 1 diverged | 2.400 (1 seed) |" in text
    paired = stats.ttest_rel([3.3, 3.4], [2.2, 2.1])  # 1e-3 against the best, 1e-2, by seed
    low, high = paired.confidence_interval(0.95)
    assert (f"| +1.2000 [{low:+.4f}, {high:+.4f}] | not distinguishable with 2 seeds "
            f"(p = {format_p(paired.pvalue)}, paired); about ") in text
    assert "seed 1 left out (unfinished on one side or both)" in text  # 3e-2's diverged seed
    assert "- `lr_max-0.03__seed-1` diverged: train/loss 9.000 at step 2" in text
    assert "Edge of stability: best lr 0.01" in text and "published on one GPU" in text
    assert "![lr: final val loss against the learning rate](lr_lr.png)" in text
    assert (out.parent / "lr_lr.png").stat().st_size > 1000


def test_an_lr_grid_per_batch_size_gives_each_its_best_rate_and_curves(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The batch-size experiment: an lr grid at each batch size, the best rate of each shown."""
    root = tmp_path / "runs" / "batch"
    for batch, best_lr in ((4, 1e-2), (64, 3e-2)):
        for lr in (1e-2, 3e-2):
            final = 2.0 if lr == best_lr else 2.5
            path = fake_run(root, f"batch-{batch}__lr-{lr:g}", "finished", [5.0, 4.0, 3.0, final],
                            lr_max=lr)
            config = {**json.loads((path / "config.json").read_text()),
                      "train": {"batch_size": batch}}
            (path / "config.json").write_text(json.dumps(config))
    (edge4, edge64) = edges(by_point(load_runs([root])), ["optim.lr_max", "train.batch_size"])
    assert (edge4.series, edge4.best[0]) == ("batch_size=4", 1e-2)
    assert (edge64.series, edge64.best[0]) == ("batch_size=64", 3e-2)
    out = tmp_path / "report" / "EXPERIMENTS.md"
    code, _, err = cli(capsys, "report", str(tmp_path / "runs"), "--out", str(out), "--no-samples")
    assert code == 0, err
    text = out.read_text()
    assert "Edge of stability (batch_size=4): best lr 0.01" in text
    assert "Edge of stability (batch_size=64): best lr 0.03" in text
    for figure in ("batch_best_steps.png", "batch_best_time.png"):
        assert f"({figure})" in text and (out.parent / figure).stat().st_size > 1000


def test_bits_per_byte_that_a_sampled_evaluation_did_not_give_is_a_dash_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "runs" / "s"
    for name, seed, batches in (("lr_max-0.001__seed-0", 0, 50), ("lr_max-0.001__seed-1", 1, 50),
                                ("lr_max-0.1__seed-0", 0, 0)):
        path = seeded_run(root, name, "finished", [5.0, 4.0, 3.0, 2.0], seed,
                          lr_max=float(name[7:name.index("__")]))
        config = json.loads((path / "config.json").read_text())
        config["train"]["eval_batches"] = batches
        (path / "config.json").write_text(json.dumps(config))
    out = tmp_path / "report.md"
    assert cli(capsys, "report", tmp_path / "runs", "--out", out, "--no-samples")[0] == 0
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `lr_max-0.001`"))
    assert f"| {NO_BPB} |" in row
    assert ("— bits/byte needs the whole validation file: these runs scored a sample of it "
            "(train.eval_batches=50; 0 scores all of it)") in text
    row = next(line for line in text.splitlines() if line.startswith("| `lr_max-0.1`"))
    assert f"| {NO_BPB} |" not in row  # a whole-file evaluation that logged no bpb: blank


def test_the_sweep_table_shows_the_dash_and_its_reason(tmp_path: Path) -> None:
    from rich.console import Console

    from lmlab.cli.sweep import _table

    the_plan = plan(tiny_sweep(tmp_path, "train.eval_batches=4", grid={"optim.lr_max": ["1e-3"]}))
    rows = [{"run": "lr_max-0.001", "status": "finished", "final_val_loss": 2.0,
             "val_bpb": None, "steps": 30}]
    console = Console(record=True, width=100)
    console.print(_table(rows, the_plan))
    text = console.export_text()
    assert "2  " in text and f" {NO_BPB} " in text
    assert "bits/byte needs the whole validation file" in text and "eval_batches=4" in text
    rows[0]["val_bpb"] = 1.25
    console.print(_table(rows, the_plan))
    assert "needs the whole" not in console.export_text()
