"""Never training the same run twice: a sweep point whose defining config matches a complete run
under the runs folder is copied from it (no training), with the point's own name and the
original's results; any other run, a key that defines the run, other data, a run in use or half
written, is trained as before, and so is everything with ``--no-reuse``."""

import json
import shutil
from pathlib import Path

import pytest

from lmlab.atomic import atomic_path
from lmlab.config import NOT_DEFINING, diff, run_identity
from lmlab.experiments import reuse, runner
from lmlab.experiments.planning import Plan, Point, plan
from lmlab.experiments.runner import run_sweep
from lmlab.experiments.sweep import Sweep
from lmlab.training.lock import run_lock
from lmlab.training.rundir import Run, RunDir
from tests.helpers.lmlab_cli import cli
from tests.helpers.tiny_runs import (
    PRESET,
    STEPS_ONLY,
    VOCAB,
    pattern_tokens,
    tiny_run,
    write_tokens,
)


def _sweep(tmp_path: Path, name: str, *overrides: str, **grid: list[str]) -> Sweep:
    """A sweep of the tiny test runs named ``name``, under ``tmp_path/runs``; ``grid`` keys are
    dotted keys with ``__`` for the dot."""
    words = [*tiny_run(tmp_path), *STEPS_ONLY, "train.max_steps=12", "train.eval_interval=6",
             *overrides]
    return Sweep(config=PRESET, name=name, overrides=words,
                 grid={key.replace("__", "."): values for key, values in grid.items()})


def _finish(point: Point, status: str = "finished") -> Path:
    """The point's run directory as training leaves it, without training: config, status,
    metrics and a checkpoint."""
    run = point.run_dir
    run.root.mkdir(parents=True)
    run.write_config(point.config)
    run.set_status(status)
    lines = [{"step": step, "tokens": 128 * step, "wall_time_s": 0.1 * step,
              "train/loss": 4.0 - 0.1 * step} for step in range(1, 13)]
    lines.append({"step": 12, "tokens": 1536, "wall_time_s": 1.2, "val/loss": 3.5})
    run.metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run.checkpoint.parent.mkdir()
    run.checkpoint.write_bytes(b"weights of " + point.name.encode())
    return run.root


def _finished_sweep(tmp_path: Path, **grid: list[str]) -> Plan:
    """Sweep ``a`` over ``grid`` with every point finished (without training)."""
    done = plan(_sweep(tmp_path, "a", **grid))
    for point in done.points:
        _finish(point)
    return done


def _reused(the_plan: Plan) -> list[str]:
    """The names of the points of ``the_plan`` that reuse_runs copied."""
    events: list[str] = []
    index = reuse.RunIndex(the_plan.root.parent)
    todo = reuse.reuse_runs(index, the_plan.points, events.append)
    copied = [point.name for point in the_plan.points if point not in todo]
    assert [event.split(":")[0] for event in events] == copied
    return copied


def _no_training(monkeypatch: pytest.MonkeyPatch, trained: list[str] | None = None) -> None:
    """Make the runner's training fail the test, or only record the names trained."""
    def train(config, say):
        if trained is None:
            pytest.fail(f"{config.run.name} was trained")
        trained.append(config.run.name)
        raise RuntimeError("not trained in this test")
    monkeypatch.setattr(runner, "train", train)


@pytest.mark.slow
def test_an_ablation_reuses_the_baseline_runs_of_another_sweep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = plan(_sweep(tmp_path, "lr", optim__lr_max=["1e-2", "3e-2"]))
    originals = {point.name: point.run_dir.root for point in first.points}
    run_sweep(first)
    before = {name: Run.load(root).summary() for name, root in originals.items()}

    trained: list[str] = []
    _no_training(monkeypatch, trained)
    events: list[str] = []
    ablation = plan(_sweep(tmp_path, "ablation", model__norm=["rms", "none"],
                           optim__lr_max=["1e-2", "3e-2"]))
    rows = run_sweep(ablation, on_event=events.append)

    assert trained == ["norm-none__lr_max-0.01", "norm-none__lr_max-0.03"]
    for lr in ("0.01", "0.03"):
        name = f"norm-rms__lr_max-{lr}"
        original = originals[f"lr_max-{lr}"]
        assert (f"{name}: reused {original} (same run; --no-reuse trains it again)") in events
        copy = RunDir(ablation.root / name)
        assert copy.read_metrics() == RunDir(original).read_metrics()
        row = next(row for row in rows if row["run"] == name)
        summary = before[f"lr_max-{lr}"]  # the results; the comparisons are the sweep's own
        assert {key: row[key] for key in summary if key != "run"} == {
            key: value for key, value in summary.items() if key != "run"}
        assert (row["norm"], row["lr_max"]) == ("rms", float(lr))
        config = copy.read_config()
        assert (config["run"]["name"], Path(config["run"]["runs_dir"])) == (name, ablation.root)
        assert copy.read_env()["reused_from"] == str(original.resolve())
    again: list[str] = []
    run_sweep(plan(_sweep(tmp_path, "ablation", model__norm=["rms", "none"],
                          optim__lr_max=["1e-2", "3e-2"])), on_event=again.append)
    assert "norm-rms__lr_max-0.01: finished, skipped" in again  # planned as its own run


def test_no_reuse_trains_the_matching_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    _finished_sweep(tmp_path, optim__lr_max=["1e-2"])
    trained: list[str] = []
    _no_training(monkeypatch, trained)
    words = _sweep(tmp_path, "b").overrides
    code, _, err = cli(capsys, "sweep", PRESET, *words, "--name", "b",
                       "--grid", "optim.lr_max=1e-2", "--no-reuse")
    assert code == 0 and trained == ["lr_max-0.01"] and "reused" not in err

    code, _, err = cli(capsys, "sweep", PRESET, *words, "--name", "c",
                       "--grid", "optim.lr_max=1e-2")
    assert code == 0 and trained == ["lr_max-0.01"]
    assert f"lr_max-0.01: reused {tmp_path / 'runs' / 'a' / 'lr_max-0.01'}" in err


def test_a_dry_run_counts_a_run_to_be_reused_as_free(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    _finished_sweep(tmp_path, optim__lr_max=["1e-2"])
    words = [*_sweep(tmp_path, "b").overrides, "--name", "b",
             "--grid", "optim.lr_max=1e-2,3e-2", "--dry-run", "--no-measure"]
    code, out, _ = cli(capsys, "sweep", PRESET, *words)
    assert code == 0 and "1 to run" in out
    assert "lr_max-0.01: " in out and "a copy of the same run  [pending: reuse]" in out
    assert "lr_max-0.03: " in out and "[pending: run]" in out

    code, out, _ = cli(capsys, "sweep", PRESET, *words, "--no-reuse")
    assert code == 0 and "2 to run" in out and "reuse" not in out


@pytest.mark.parametrize("change", [
    "train.seed=1", "optim.lr_max=3e-2", "model.d_model=16", "model.norm=none",
    "train.max_steps=13", "train.log_interval=2", "train.eval_interval=4", "train.compile=true",
])
def test_a_run_that_differs_in_a_defining_key_is_not_reused(tmp_path: Path,
                                                            change: str) -> None:
    _finished_sweep(tmp_path, optim__lr_max=["1e-2"])
    key, _, value = change.partition("=")
    other = plan(_sweep(tmp_path, "b", "optim.lr_max=1e-2", **{key.replace(".", "__"): [value]}))
    assert _reused(other) == []


def test_bookkeeping_that_changes_no_record_still_matches(tmp_path: Path) -> None:
    _finished_sweep(tmp_path, optim__lr_max=["1e-2"])
    later = plan(_sweep(tmp_path, "b", "train.ckpt_interval=3", "train.dist_timeout_s=60",
                        optim__lr_max=["1e-2"]))
    assert _reused(later) == ["lr_max-0.01"]


def test_a_length_in_tokens_matches_the_same_number_of_steps(tmp_path: Path) -> None:
    """``batch_size`` spells its length in tokens, ``lr_sweep`` in steps: at batch 16 they are
    one run (the same losses to the last digit), so the second reuses the first; a length that
    ends inside a step is another run."""
    done = _finished_sweep(tmp_path, optim__lr_max=["1e-2"])
    tokens = 12 * done.points[0].config.tokens_per_step
    for extra, expected in ((0, ["lr_max-0.01"]), (1, [])):
        later = plan(_sweep(tmp_path, f"tokens-{extra}", "train.max_steps=none",
                            f"train.max_tokens={tokens + extra}", optim__lr_max=["1e-2"]))
        assert later.points[0].config.max_steps == 12 + extra
        assert _reused(later) == expected


def test_the_same_token_files_elsewhere_match_and_other_data_does_not(tmp_path: Path) -> None:
    _finished_sweep(tmp_path, optim__lr_max=["1e-2"])
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("train.bin", "train.bin.json", "valid.bin", "valid.bin.json"):
        shutil.copy(tmp_path / name, moved / name)
    same = plan(_sweep(tmp_path, "b", f"data.train_path={moved / 'train.bin'}",
                       f"data.valid_path={moved / 'valid.bin'}", optim__lr_max=["1e-2"]))
    assert _reused(same) == ["lr_max-0.01"]

    other = tmp_path / "other.bin"
    write_tokens(other, pattern_tokens(20_000, VOCAB, seed=7), VOCAB, source_path="other.txt")
    assert _reused(plan(_sweep(tmp_path, "c", f"data.train_path={other}",
                               optim__lr_max=["1e-2"]))) == []


@pytest.mark.parametrize("state", ["locked", "no status", "running", "interrupted",
                                   "no metrics", "time budget"])
def test_a_run_that_is_not_complete_and_idle_is_not_reused(tmp_path: Path, state: str) -> None:
    budget = ["train.time_budget_s=600"] if state == "time budget" else []
    done = plan(_sweep(tmp_path, "a", *budget, optim__lr_max=["1e-2"]))
    original = _finish(done.points[0], state if state in ("running", "interrupted")
                       else "finished")
    if state == "no status":
        RunDir(original).status_file.unlink()
    if state == "no metrics":
        RunDir(original).metrics.write_text("")
    later = plan(_sweep(tmp_path, "b", *budget, optim__lr_max=["1e-2"]))
    if state == "locked":
        with run_lock(original):
            assert _reused(later) == []
    else:
        assert _reused(later) == []
    assert not (later.root / "lr_max-0.01").exists()


def test_a_diverged_run_is_reused_as_the_result_of_its_config(tmp_path: Path) -> None:
    done = plan(_sweep(tmp_path, "a", optim__lr_max=["1e-2"]))
    _finish(done.points[0], "diverged")
    later = plan(_sweep(tmp_path, "b", optim__lr_max=["1e-2"]))
    assert _reused(later) == ["lr_max-0.01"]
    assert later.points[0].run_dir.status == "diverged"


def test_a_point_that_has_started_is_resumed_not_replaced(tmp_path: Path) -> None:
    _finished_sweep(tmp_path, optim__lr_max=["1e-2"])
    later = plan(_sweep(tmp_path, "b", optim__lr_max=["1e-2"]))
    started = later.points[0].run_dir
    started.root.mkdir(parents=True)
    started.set_status("interrupted")
    assert _reused(later) == []
    assert started.status == "interrupted"


def test_the_copy_is_the_points_own_and_leaves_the_original_untouched(tmp_path: Path) -> None:
    original = RunDir(_finished_sweep(tmp_path, optim__lr_max=["1e-2"]).points[0].run_dir.root)
    (original.root / "samples.txt").write_text("once upon a time")
    metrics = original.metrics.read_text()
    later = plan(_sweep(tmp_path, "b", optim__lr_max=["1e-2"]))
    assert _reused(later) == ["lr_max-0.01"]
    copy = later.points[0].run_dir
    assert copy.read_config() == later.points[0].config.model_dump(mode="json")
    assert (copy.root / "samples.txt").read_text() == "once upon a time"
    assert copy.checkpoint.read_bytes() == original.checkpoint.read_bytes()
    assert not list(later.root.glob(".*reuse*"))  # no building folder left

    with open(copy.metrics, "a", encoding="utf-8") as log:
        log.write(json.dumps({"step": 13, "train/loss": 9.0}) + "\n")
    copy.set_status("running")
    with atomic_path(copy.checkpoint) as tmp:  # as the trainer saves a checkpoint
        tmp.write_bytes(b"trained on")
    assert original.metrics.read_text() == metrics and original.status == "finished"
    assert original.checkpoint.read_bytes() == b"weights of lr_max-0.01"


def test_the_runs_folder_is_read_once_per_sweep(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    grid = {"optim__lr_max": [f"{i}e-3" for i in range(1, 21)], "train__seed": ["0", "1", "2"]}
    many = _finished_sweep(tmp_path, **grid)
    reads: list[Path] = []
    read_config = RunDir.read_config
    monkeypatch.setattr(RunDir, "read_config",
                        lambda self: reads.append(self.root) or read_config(self))
    later = plan(_sweep(tmp_path, "b", **grid))
    reads.clear()
    assert len(_reused(later)) == len(many.points) == 60
    assert sorted(reads) == sorted(point.run_dir.root for point in many.points)


@pytest.mark.parametrize("key, value, defines", [
    ("run.name", "other", False), ("run.runs_dir", "elsewhere", False),
    ("run.resume", "never", False), ("train.ckpt_interval", 7, False),
    ("train.dist_timeout_s", 1.0, False),
    ("train.seed", 9, True), ("optim.lr_max", 0.5, True), ("model.num_layers", 9, True),
    ("data.sampling", "random", True), ("train.max_steps", 99, True),
    ("train.log_interval", 3, True), ("train.eval_interval", 3, True),
    ("train.eval_batches", 3, True), ("train.compile", True, True),
    ("train.device", "cuda", True), ("run.trackers", ["wandb"], True),
])
def test_run_identity_is_the_diff_over_the_defining_keys(tmp_path: Path, key: str, value,
                                                         defines: bool) -> None:
    config = plan(_sweep(tmp_path, "a", optim__lr_max=["1e-2"])).points[0].config
    before = config.model_dump(mode="json")
    section, name = key.split(".")
    after = {**before, section: {**before[section], name: value}}
    assert (run_identity(before) != run_identity(after)) is defines
    assert bool(diff(before, after, ignoring=NOT_DEFINING)) is defines
