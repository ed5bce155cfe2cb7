"""trackio as a tracker, offline: a tiny run's metrics, config and status land in trackio's local
store (read back with trackio's own reader), a resumed run continues the same trackio run, and
a sweep's points are one project. Skipped without the `trackio` extra."""

import sys
from pathlib import Path

import pytest

from lmlab.config import load_config
from lmlab.errors import ConfigError
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from lmlab.training.tracking import Trackers
from tests.helpers.tiny_runs import tiny_run


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """trackio's SQLite reader with its store in ``tmp_path`` (trackio reads ``TRACKIO_DIR``
    when it is imported, so its modules are imported afresh here)."""
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    for name in [name for name in sys.modules if name == "trackio" or
                 name.startswith("trackio.")]:
        monkeypatch.delitem(sys.modules, name)
    pytest.importorskip("trackio")
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage


def _train(tmp_path: Path, *words: str):
    return train(load_config(None, tiny_run(tmp_path, "run.trackers=['trackio']",
                                            "train.max_steps=20", *words)))


def test_a_run_logs_its_metrics_config_and_status(tmp_path: Path, store) -> None:
    result = _train(tmp_path)
    project = "runs"  # the folder that holds the run
    (record,) = store.get_run_records(project)
    logged = store.get_logs(project, run_id=record["id"])
    ours = RunDir(result.run_dir).read_metrics()
    assert [(r["step"], r.get("train/loss"), r.get("val/loss")) for r in logged] == [
        (r["step"], r.get("train/loss"), r.get("val/loss")) for r in ours]
    config = store.get_run_config(project, run_id=record["id"])
    assert config["optim.lr_max"] == 1e-2 and config["model.d_model"] == 32
    (alert,) = store.get_alerts(project)
    assert alert["title"] == "run finished" and alert["step"] == 20


def test_a_resumed_run_continues_the_same_trackio_run(tmp_path: Path, store) -> None:
    _train(tmp_path, "train.max_steps=30", "train.time_budget_s=none")  # a schedule of 30
    run = tmp_path / "runs" / "run"
    first = (run / "trackio.json").read_text()
    _train(tmp_path, "train.max_steps=40", "run.resume=must")
    assert (run / "trackio.json").read_text() == first
    (record,) = store.get_run_records("runs")  # one run, not two
    steps = [r["step"] for r in store.get_logs("runs", run_id=record["id"]) if "train/loss" in r]
    assert steps == list(range(1, 41))


def test_a_fresh_start_is_a_new_trackio_run(tmp_path: Path, store) -> None:
    _train(tmp_path, "run.name=a")
    _train(tmp_path, "run.name=b")
    assert [r["name"] for r in store.get_run_records("runs")] == ["a", "b"]


def test_a_diverged_run_says_why(tmp_path: Path, store) -> None:
    result = _train(tmp_path, "optim.lr_max=1e6", "optim.warmup_iters=0")
    assert result.status == "diverged"
    (alert,) = store.get_alerts("runs")
    assert alert["title"] == "run diverged" and alert["text"] == result.reason
    assert alert["level"] == "error"


@pytest.mark.slow
def test_a_sweeps_points_are_one_project(tmp_path: Path, store) -> None:
    from lmlab.experiments.planning import plan
    from lmlab.experiments.runner import run_sweep
    from tests.helpers.tiny_runs import tiny_sweep

    sweep = tiny_sweep(tmp_path, "run.trackers=['trackio']", "train.max_steps=5",
                       grid={"optim.lr_max": ["1e-3", "1e-2"]})
    run_sweep(plan(sweep))
    assert sorted(r["name"] for r in store.get_run_records("s")) == [
        "lr_max-0.001", "lr_max-0.01"]


def test_a_missing_trackio_names_the_extra(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trackio", None)  # makes `import trackio` fail
    config = load_config(None, tiny_run(tmp_path, "run.trackers=['trackio']"))
    with pytest.raises(ConfigError, match=r'pip install "lmlab\[trackio\]"'):
        Trackers.for_run(config, RunDir(tmp_path / "r"), resume_step=None)
    assert not (tmp_path / "r").exists()
