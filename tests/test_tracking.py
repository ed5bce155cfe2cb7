"""Run directory files and trackers: JSONL always, wandb/TensorBoard when installed."""

import doctest
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from lmlab import jsonio
from lmlab.atomic import atomic_write_json
from lmlab.config import load_config
from lmlab.errors import ConfigError
from lmlab.training.rundir import RunDir
from lmlab.training.tracking import JsonlTracker, Trackers
from tests.helpers.tiny_runs import tiny_run


def test_jsonl_writes_one_object_per_line(tmp_path: Path) -> None:
    tracker = JsonlTracker(tmp_path / "m.jsonl")
    tracker.log({"train/loss": 2.5}, step=1)
    tracker.log({"val/loss": 2.0, "val/ppl": 7.4}, step=2)
    tracker.close()
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 1, "train/loss": 2.5}, {"step": 2, "val/loss": 2.0, "val/ppl": 7.4}]


def _strict(text: str):
    """Parse as strict JSON parsers do: NaN and Infinity are not JSON."""
    def reject(constant: str):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=reject)


def test_a_diverged_metric_is_written_as_null_and_read_back_as_nan(tmp_path: Path) -> None:
    tracker = JsonlTracker(tmp_path / "metrics.jsonl")
    tracker.log({"train/loss": 2.5}, step=1)
    tracker.log({"train/loss": float("nan"), "train/grad_norm": float("inf")}, step=2)
    tracker.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert _strict(lines[1]) == {"step": 2, "train/loss": None, "train/grad_norm": None}
    second = RunDir(tmp_path).read_metrics()[1]
    assert second["step"] == 2 and math.isnan(second["train/loss"])
    assert math.isnan(second["train/grad_norm"])


def test_jsonio_docstring_examples() -> None:
    result = doctest.testmod(jsonio)
    assert result.failed == 0 and result.attempted > 0


def test_json_files_are_strict_json(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "summary.json", [{"run": "a", "val/loss": float("-inf")}])
    assert _strict((tmp_path / "summary.json").read_text()) == [{"run": "a", "val/loss": None}]


def test_jsonl_on_resume_drops_records_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "train/lo')  # killed
    tracker = JsonlTracker(path, keep_until=2)
    tracker.log({"x": 1.0}, step=3)
    tracker.close()
    assert RunDir(tmp_path).read_metrics() == []  # RunDir reads metrics.jsonl, not m.jsonl
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]


def test_run_dir_status_and_env(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r")
    assert run.status is None and not run.exists()
    run.set_status("running")
    run.set_status("finished")
    assert run.status == "finished"
    run.write_env(torch.device("cpu"))
    env = json.loads(run.env.read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert {"python", "numpy", "git_commit", "device_name"} <= env.keys()
    assert not list(run.root.glob(".*tmp"))  # atomic writes leave no temporary files


@pytest.mark.parametrize("name", ["wandb", "tensorboard"])
def test_a_missing_tracker_package_names_the_extra(tmp_path: Path, name: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    config = load_config(None, tiny_run(tmp_path, f"run.trackers=['{name}']"))
    with pytest.raises(ConfigError, match=rf'pip install "lmlab\[{name}\]"'):
        Trackers.for_run(config, RunDir(tmp_path / "r"), resume_step=None)
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_tensorboard_tracker_writes_events(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    config = load_config(None, tiny_run(tmp_path, "run.trackers=['tensorboard']"))
    trackers = Trackers.for_run(config, RunDir(tmp_path / "r"), resume_step=None)
    trackers.log({"train/loss": 1.0}, step=1)
    trackers.close()
    assert list((tmp_path / "r" / "tensorboard").glob("events.out.tfevents.*"))


def test_wandb_tracker_works_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = load_config(None, tiny_run(tmp_path, "run.trackers=['wandb']"))
    trackers = Trackers.for_run(config, RunDir(tmp_path / "r"), resume_step=None)
    trackers.log({"train/loss": 1.0}, step=1)
    trackers.close()
    assert (tmp_path / "r" / "wandb").is_dir()
