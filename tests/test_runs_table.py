"""`lmlab runs`: the table of a folder of real tiny runs (a sweep with seeds, a diverged run, and
copies of a real run left as a crash, Ctrl-C, a live writer or a kill leave them), checked
against what each run's own files say; its sort, filters, JSON and watch; and the folders it
must not choke on (empty, missing, a damaged metrics line or config). The tests of real runs
are slow (their training, once per module, takes seconds); bad options are checked on
:func:`~tests.helpers.fake_runs.fake_run` folders."""

import json
import os
import shutil
import statistics
from pathlib import Path

import pytest

from lmlab.config import load_config
from lmlab.experiments.planning import plan
from lmlab.experiments.runner import run_sweep
from lmlab.experiments.runs_table import list_runs
from lmlab.training.lock import run_lock
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from tests.helpers.fake_runs import fake_run
from tests.helpers.lmlab_cli import cli
from tests.helpers.tiny_runs import STEPS_ONLY, tiny_run, tiny_sweep

STEPS = ["train.max_steps=10", "train.eval_interval=5"]
"""Every run here: 10 steps, evaluated at 5 and 10."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real runs, trained once: runs/s (lr 1e-3 and 1e-2, two seeds each) and runs/diverged."""
    data = tmp_path_factory.mktemp("runs_table")
    run_sweep(plan(tiny_sweep(data, *STEPS, grid={"optim.lr_max": ["1e-3", "1e-2"]}, seeds=2)))
    train(load_config(None, tiny_run(data, *STEPS_ONLY, *STEPS, "run.name=diverged",
                                     "optim.lr_max=1e6", "optim.warmup_iters=0")))
    return data / "runs"


@pytest.fixture
def runs(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained runs, plus copies of one finished run left failed, interrupted,
    running (this process holds its lock while the test runs) and killed (its lock file is
    there, held by nobody)."""
    root = tmp_path / "runs"
    shutil.copytree(trained, root)
    finished = root / "s" / "lr_max-0.001__seed-0"
    for name in ("failed", "interrupted", "running", "killed"):
        shutil.copytree(finished, root / name)
    RunDir(root / "failed").set_status("failed", "out of GPU memory at batch 8, context 16")
    RunDir(root / "interrupted").set_status("interrupted")
    RunDir(root / "killed").set_status("running")
    RunDir(root / "running").set_status("running")
    with run_lock(root / "running"):
        yield root


def _records(run: Path) -> list[dict]:
    """A run's metrics, read here line by line (the reference the table is checked against)."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _best(run: Path) -> float:
    return min(r["val/loss"] for r in _records(run) if "val/loss" in r)


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["run"]: row for row in rows}


@pytest.mark.slow
def test_each_run_shows_how_it_ended(runs: Path) -> None:
    rows = _by_name(list_runs(runs, fold_seeds=False).rows)
    assert {name: row["status"] for name, row in rows.items()} == {
        "s/lr_max-0.001__seed-0": "finished", "s/lr_max-0.001__seed-1": "finished",
        "s/lr_max-0.01__seed-0": "finished", "s/lr_max-0.01__seed-1": "finished",
        "diverged": "diverged", "failed": "out of memory", "interrupted": "interrupted",
        "running": "running", "killed": "killed"}
    assert rows["diverged"]["reason"] == RunDir(runs / "diverged").reason
    assert rows["diverged"]["reason"] and rows["diverged"]["steps"] < 10
    assert rows["failed"]["reason"].startswith("out of GPU memory")
    assert f"pid {os.getpid()} " in rows["running"]["reason"]
    assert "no process holds its lock" in rows["killed"]["reason"]
    for name, row in rows.items():
        last = _records(runs / name)[-1]
        assert (row["steps"], row["tokens"], row["wall_time_s"]) == (
            last["step"], last["tokens"], last["wall_time_s"])
        assert row["tokens_per_s"] == pytest.approx(last["tokens"] / last["train_time_s"])
    for name in ("s/lr_max-0.01__seed-1", "running"):
        assert rows[name]["best_val_loss"] == _best(runs / name)
        vals = [r for r in _records(runs / name) if "val/loss" in r]
        assert (rows[name]["final_val_loss"], rows[name]["val_bpb"]) == (
            vals[-1]["val/loss"], vals[-1]["val/bpb"])


@pytest.mark.slow
def test_seeds_fold_into_mean_and_spread(runs: Path) -> None:
    table = list_runs(runs / "s")
    assert [row["run"] for row in table.rows] and table.keys == ["optim.lr_max"]
    rows = _by_name(table.rows)
    assert set(rows) == {"lr_max-0.001", "lr_max-0.01"}
    seeds = [_best(runs / "s" / f"lr_max-0.01__seed-{seed}") for seed in (0, 1)]
    point = rows["lr_max-0.01"]
    assert point["seeds"] == 2 and point["config"] == {"optim.lr_max": 0.01}
    assert point["best_val_loss"] == pytest.approx(statistics.fmean(seeds))
    assert point["best_val_loss_std"] == pytest.approx(statistics.stdev(seeds))
    unfolded = list_runs(runs / "s", fold_seeds=False)
    assert len(unfolded.rows) == 4 and unfolded.keys == ["optim.lr_max", "train.seed"]


@pytest.mark.slow
def test_newest_first_then_any_sort(runs: Path) -> None:
    for age, run in enumerate(["diverged", "failed", "killed"]):  # diverged newest
        for file in (runs / run).iterdir():
            os.utime(file, (1e9 - age, 1e9 - age))
    names = [row["run"] for row in list_runs(runs, statuses=["diverged", "failed", "killed"]).rows]
    assert names == ["diverged", "failed", "killed"]
    rows = list_runs(runs / "s", fold_seeds=False, sort="val/loss").rows
    finals = [row["final_val_loss"] for row in rows]
    assert finals == sorted(finals)
    rows = list_runs(runs / "s", fold_seeds=False, sort="lr_max", reverse=True).rows
    assert [row["config"]["optim.lr_max"] for row in rows] == [0.01, 0.01, 0.001, 0.001]


@pytest.mark.slow
def test_filters_on_status_and_config_values(runs: Path) -> None:
    assert [r["run"] for r in list_runs(runs, statuses=["diverged"]).rows] == ["diverged"]
    rows = list_runs(runs / "s", where=["optim.lr_max=1e-3"], fold_seeds=False).rows
    assert sorted(r["run"] for r in rows) == ["lr_max-0.001__seed-0", "lr_max-0.001__seed-1"]
    assert list_runs(runs / "s", where=["lr_max=1e-3", "seed=1"]).rows[0]["run"] == (
        "lr_max-0.001__seed-1")


@pytest.mark.slow
def test_the_command_prints_the_table_and_json(runs: Path, capsys) -> None:
    code, out, _ = cli(capsys, "runs", runs, "--status", "diverged", "--status", "finished")
    assert code == 0 and "lr_max-0.01" in out and "diverged" in out and "killed" not in out
    assert "seeds folded" in out
    code, out, _ = cli(capsys, "runs", runs / "s", "--json", "--seeds", "--sort", "val/loss")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4
    assert [r["final_val_loss"] for r in rows] == sorted(r["final_val_loss"] for r in rows)
    code, out, _ = cli(capsys, "runs", runs / "s", "--watch", "0.5", "--iterations", "2")
    assert code == 0 and "lr_max-0.001" in out


@pytest.mark.parametrize("words, message", [
    (["--where", "nope=1"], "--where nope: not a config key of these runs"),
    (["--where", "lr_max"], "is not key=value"),
    (["--sort", "nope"], "--sort nope: not a config key of these runs"),
    (["--watch", "1", "--json"], "--watch redraws the table"),
])
def test_bad_options_are_one_line(tmp_path: Path, capsys, words, message) -> None:
    fake_run(tmp_path, "a", "finished", [3.0, 2.0])
    fake_run(tmp_path, "b", "diverged", [3.0, 9.0], lr_max=1.0)
    code, out, err = cli(capsys, "runs", tmp_path, *words)
    assert code != 0 and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_an_empty_or_missing_folder_is_one_clear_line(tmp_path: Path, capsys) -> None:
    code, out, err = cli(capsys, "runs", tmp_path)
    assert code == 0 and out.startswith(f"no runs under {tmp_path} yet") and not err
    code, out, err = cli(capsys, "runs", tmp_path / "nope")
    assert code == 1 and err == (f"error: {tmp_path / 'nope'} is not a folder of runs (no such "
                                 "folder): give the folder that holds them (run.runs_dir, runs/ "
                                 "by default), e.g. lmlab runs runs\n")


@pytest.mark.slow
def test_damaged_files_are_said_in_the_row(runs: Path, capsys) -> None:
    metrics = runs / "s" / "lr_max-0.001__seed-0" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    val = next(i for i, line in enumerate(lines) if "val/loss" in line)
    lines[val] = lines[val][:-5]  # a garbled validation line
    metrics.write_text("\n".join(lines) + '\n{"step": 11, "tok')  # and a last one cut short
    (runs / "interrupted" / "config.json").write_text("{not json")
    rows = _by_name(list_runs(runs, fold_seeds=False).rows)
    damaged = rows["s/lr_max-0.001__seed-0"]
    assert damaged["damaged_lines"] == 2 and damaged["steps"] == 10
    assert damaged["best_val_loss"] == min(json.loads(line)["val/loss"] for line in lines
                                           if "val/loss" in line and line.endswith("}"))
    assert rows["interrupted"]["status"] == "damaged"
    assert "config.json is not valid JSON" in rows["interrupted"]["reason"]
    code, out, err = cli(capsys, "runs", runs)
    assert code == 0 and "2 damaged metrics lines skipped" in out and not err


def test_the_same_run_in_two_sweeps_folds_its_seeds_in_each(tmp_path: Path) -> None:
    """A run reused by a second sweep has the first's config: each sweep's seeds still fold
    into one row of that sweep, not into one row of both nor into a row a run."""
    for sweep in ("lr_sweep", "ablation"):
        for seed in (0, 1):
            path = fake_run(tmp_path / sweep, f"lr__seed-{seed}", "finished", [3.0, 2.0 + seed])
            config = json.loads((path / "config.json").read_text())
            config["train"] = {"seed": seed}
            (path / "config.json").write_text(json.dumps(config))
    rows = _by_name(list_runs(tmp_path).rows)
    assert sorted(rows) == ["ablation/lr", "lr_sweep/lr"]
    assert rows["lr_sweep/lr"]["seeds"] == rows["ablation/lr"]["seeds"] == 2
    assert rows["ablation/lr"]["best_val_loss"] == pytest.approx(2.6)


def test_a_long_reason_is_cut_in_the_table_and_whole_in_json(tmp_path: Path, capsys) -> None:
    path = fake_run(tmp_path, "d", "diverged", [3.0, 9.0])
    reason = "train/loss 114.697 at step 58 is over 2x the first step's 6.931 " * 3
    RunDir(path).set_status("diverged", reason.strip())
    code, out, _ = cli(capsys, "runs", tmp_path)
    assert code == 0 and reason[:60] in out.replace("\n", "") and reason.strip() not in out
    code, out, _ = cli(capsys, "runs", tmp_path, "--json")
    assert code == 0 and json.loads(out)[0]["reason"] == reason.strip()
