"""`lmlab sweep` on tiny runs: a 2x2 grid and its summary, a restart after a kill, a diverging
point, the token budget and learning-rate scaling, bad input caught before any run, and sweep
files: one-line errors naming the file and key, a round trip, every preset in every variant."""

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lmlab.compute import default_mfu, estimate, estimated_speed, run_seconds
from lmlab.errors import ConfigError
from lmlab.experiments.planning import plan
from lmlab.experiments.runner import run_sweep
from lmlab.experiments.sweep import Sweep
from lmlab.training.rundir import Run, RunDir
from tests.helpers.lmlab_cli import cli
from tests.helpers.tiny_runs import CONTEXT, PRESET, STEPS_ONLY, tiny_run, tiny_sweep

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_2x2_grid_makes_four_runs_and_a_summary(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, "train.max_steps=12", "train.eval_interval=6",
                       grid={"optim.lr_max": ["1e-3", "1e-2"], "train.batch_size": ["4", "8"]})
    events: list[str] = []
    rows = run_sweep(plan(sweep), on_event=events.append)
    root = tmp_path / "runs" / "s"
    names = ["lr_max-0.001__batch_size-4", "lr_max-0.001__batch_size-8",
             "lr_max-0.01__batch_size-4", "lr_max-0.01__batch_size-8"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(names)
    assert [row["run"] for row in rows] == names
    with open(root / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert json.loads((root / "summary.json").read_text()) == rows
    assert list(table[0]) == ["run", "lr_max", "batch_size", "status", "final_val_loss",
                              "best_val_loss", "val_bpb", "steps", "tokens", "wall_time_s",
                              "vs_best", "vs_best_ci_low", "vs_best_ci_high", "vs_best_p",
                              "vs_best_test", "vs_best_verdict"]
    verdicts = [row["vs_best_verdict"] for row in rows]  # one seed a point: no test
    assert sorted(verdicts) == ["1 seed: no test"] * 3 + ["best"]
    for row, line in zip(rows, table, strict=True):
        run = Run.load(root / row["run"])
        assert run.config["optim.lr_max"] == row["lr_max"] == float(line["lr_max"])
        assert run.config["train.batch_size"] == row["batch_size"]
        val = [r["val/loss"] for r in run.records if "val/loss" in r]
        assert (row["status"], row["steps"]) == ("finished", 12)
        assert row["tokens"] == 12 * row["batch_size"] * CONTEXT
        assert row["final_val_loss"] == val[-1] and row["best_val_loss"] == min(val)
        assert row["val_bpb"] > 0 and row["wall_time_s"] > 0
    assert events.count(f"{names[0]}: finished") == 1

    again: list[str] = []
    run_sweep(plan(sweep), on_event=again.append)
    assert again == [f"{name}: finished, skipped" for name in names]
    with pytest.raises(ConfigError, match=r"was run with a different config \(optim.lr_min"):
        plan(tiny_sweep(tmp_path, "train.max_steps=12", "train.eval_interval=6",
                        "optim.lr_min=5e-4", grid=sweep.grid))


def _wait_for(predicate, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 300
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.slow
def test_a_restarted_sweep_skips_finished_runs_and_resumes_a_killed_one(tmp_path: Path) -> None:
    words = [*tiny_run(tmp_path), *STEPS_ONLY, "train.max_steps=40", "train.eval_interval=0"]
    grid = "optim.lr_max=1e-2,3e-3"
    proc = subprocess.Popen([sys.executable, "-m", "lmlab", "sweep", str(PRESET), *words,
                             "--grid", grid, "--name", "s"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first, second = RunDir(tmp_path / "runs" / "s" / "lr_max-0.01"), \
        RunDir(tmp_path / "runs" / "s" / "lr_max-0.003")
    _wait_for(lambda: len(second.read_metrics()) >= 14, proc, "the second run to pass step 10")
    proc.kill()
    proc.wait()
    assert first.status == "finished" and second.status == "running"
    first_metrics = first.metrics.read_text()
    killed = second.read_metrics()

    events: list[str] = []
    sweep = Sweep(config=PRESET, name="s", overrides=words,
                  grid={"optim.lr_max": ["1e-2", "3e-3"]})
    rows = run_sweep(plan(sweep), on_event=events.append)
    assert events[0] == "lr_max-0.01: finished, skipped"
    assert first.metrics.read_text() == first_metrics
    assert [row["status"] for row in rows] == ["finished", "finished"]
    resumed = second.read_metrics()
    assert [r["step"] for r in resumed if "train/loss" in r] == list(range(1, 41))
    saved = max(r["step"] for r in resumed if r in killed)  # records up to the checkpoint stay
    assert saved >= 10 and saved % 10 == 0
    assert resumed[:saved] == killed[:saved]


@pytest.mark.slow
def test_a_diverging_point_is_recorded_and_the_sweep_completes(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, "optim.warmup_iters=0", "optim.grad_clip=none",
                       "train.max_steps=200", grid={"optim.lr_max": ["1e-2", "10"]})
    rows = run_sweep(plan(sweep), parallel=2)  # subprocesses
    assert [(row["run"], row["status"]) for row in rows] == [
        ("lr_max-0.01", "finished"), ("lr_max-10", "diverged")]
    assert rows[0]["steps"] == 200 and 0 < rows[1]["steps"] < 200
    assert "diverged" in (tmp_path / "runs" / "s" / "lr_max-10" / "train.log").read_text()


def test_fixed_tokens_and_lr_scaling_follow_the_batch_size(tmp_path: Path) -> None:
    sweep = tiny_sweep(tmp_path, grid={"train.batch_size": ["4", "32"]}, fixed_tokens=True,
                       lr_scaling="sqrt")
    points = plan(sweep).points  # base: 30 steps x 8 sequences x 16 tokens, lr 1e-2
    assert [p.config.max_steps for p in points] == [60, 8]
    assert [p.config.train.max_tokens for p in points] == [30 * 8 * CONTEXT] * 2
    assert [p.config.optim.lr_max for p in points] == [0.007071, 0.02]  # 4 significant digits
    assert [p.name for p in points] == ["batch_size-4", "batch_size-32"]
    # evaluations and checkpoints stay at the same token counts (base: every 10 steps of 8)
    assert [p.config.train.eval_interval for p in points] == [20, 2]
    assert [p.config.train.ckpt_interval for p in points] == [20, 2]
    linear = plan(tiny_sweep(tmp_path, grid={"train.batch_size": ["4"]}, lr_scaling="linear"))
    assert linear.points[0].config.optim.lr_max == pytest.approx(5e-3)
    assert linear.varied == []  # one point: nothing differs
    with pytest.raises(ConfigError, match="--fixed-tokens needs"):
        plan(tiny_sweep(tmp_path, "train.max_steps=none", "train.time_budget_s=60",
                        grid={"train.batch_size": ["4"]}, fixed_tokens=True))


@pytest.mark.parametrize(("args", "message"), [
    (["--grid", "optim.lr_max"], "--grid 'optim.lr_max' is not of the form section.key=v1,v2"),
    (["--grid", "optim.lr_max=1e-3,"], "is not of the form"),
    (["--grid", "optim.lr_mx=1e-3,1e-2"], "unknown config key 'optim.lr_mx'"),
    (["--grid", "optim.lr_max=1e-3,-1"], "override optim.lr_max=-1: Input should be greater than"),
    (["--grid", "optim.lr_max=1e-3,1e-3"], "are both named 'lr_max-0.001'"),
    (["--grid", "run.name=a,b"], "run.name cannot be swept"),
    (["--list", "model.norm"], "--list 'model.norm' is not a list of section.key=value"),
    (["--list", "model.nrm=none"], "unknown config key 'model.nrm'"),
    ([], "nothing to sweep"),
    (["--grid", "optim.lr_max=1e-3", "data.valid_path=missing.bin"], "missing.bin"),
    (["--grid", "optim.lr_max=1e-3", "--variant", "cpu"], "is a training config, not a sweep"),
    (["--grid", "train.batch_size=4", "--lr-scaling", "cubic"],
     "'cubic' is not one of 'sqrt', 'linear'"),
])
def test_bad_input_is_an_error_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture,
                                              args: list[str], message: str) -> None:
    code, out, err = cli(capsys, "sweep", str(PRESET), *tiny_run(tmp_path), *args)
    assert code != 0
    assert message in err, err
    assert not (tmp_path / "runs").exists()


def test_parallel_workers_get_a_share_of_the_cpu_threads(monkeypatch) -> None:
    from lmlab.experiments.runner import worker_envs

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    envs = worker_envs(2)
    assert len(envs) == 2
    assert envs[0]["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))


@pytest.mark.slow
def test_the_training_entry_point_trains_a_json_config_and_rejects_bad_input(
        tmp_path: Path) -> None:
    """`python -m lmlab.training` (what sweep subprocesses run): a config as JSON on stdin."""
    point = plan(tiny_sweep(tmp_path, "train.max_steps=10", grid={"optim.lr_max": ["1e-3"]}))
    config = point.points[0].config

    def entry(stdin: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lmlab.training"], input=stdin, text=True,
                              capture_output=True, cwd=REPO, timeout=300)

    done = entry(config.model_dump_json())
    assert done.returncode == 0, done.stderr
    assert RunDir(config.run_dir).status == "finished"
    assert Run.load(config.run_dir).summary()["steps"] == 10
    for stdin, message in [("{not json", "error: stdin holds no JSON config"),
                           ('{"train": {}}', "error: stdin: missing key 'data'")]:
        bad = entry(stdin)
        assert bad.returncode == 1 and bad.stderr.startswith(message), bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_a_run_written_before_new_config_keys_is_the_same_point(tmp_path: Path) -> None:
    """Upgrading lmlab adds config keys: a sweep re-run must still skip the finished points."""
    sweep = tiny_sweep(tmp_path, "train.max_steps=3", "optim.warmup_iters=1",
                       grid={"optim.lr_max": ["1e-2"]})
    run_sweep(plan(sweep))
    config = RunDir(tmp_path / "runs" / "s" / "lr_max-0.01").config
    old = json.loads(config.read_text())
    del old["model"]["qk_norm"], old["optim"]["schedule"]  # as an older lmlab wrote it
    config.write_text(json.dumps(old))
    events: list[str] = []
    run_sweep(plan(sweep), on_event=events.append)
    assert events == ["lr_max-0.01: finished, skipped"]


@pytest.mark.parametrize(("text", "message"), [
    ("seeds = 0", "seeds must be a whole number >= 1, got 0"),
    ("seeds = 2.5", "seeds must be a whole number >= 1, got 2.5"),
    ('lr_scaling = "cube"', "lr_scaling: Input should be 'sqrt' or 'linear' (got 'cube')"),
    ("grids = {}", "unknown key 'grids' (valid: config, name, overrides, grid, list, "),
    ('"optim.lr_max" = [1e-3]', "unknown key 'optim.lr_max'"),
    ("[grid]\n\"optim.lr_max\" = []", "grid.optim.lr_max must be a non-empty list, got []"),
    ("list = [[]]", "list must be a non-empty list of key=value words, got []"),
    ("list = [[\"model.norm=none\", 3]]", "list.0.1: Input should be a valid string (got 3)"),
])
def test_a_bad_sweep_file_is_one_line_naming_the_file_and_key(tmp_path: Path, text: str,
                                                              message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'config = "base.toml"\n{text}\n')
    with pytest.raises(ConfigError) as caught:
        Sweep.from_file(path)
    assert str(caught.value).startswith(f"{path}: {message}"), caught.value
    assert "\n" not in str(caught.value)


def test_a_sweep_file_without_a_config_names_the_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[grid]\n"optim.lr_max" = [1e-3]\n')
    with pytest.raises(ConfigError, match=r"^.*bad\.toml: missing key 'config'$"):
        Sweep.from_file(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"seeds": 0}, "sweep: seeds must be a whole number >= 1, got 0"),
    ({"lr_scaling": "cube"}, "sweep: lr_scaling: Input should be 'sqrt' or 'linear' (got 'cube')"),
    ({"grid": {"optim.lr_max": []}}, "sweep: grid.optim.lr_max must be a non-empty list, got []"),
])
def test_bad_command_line_additions_are_one_line(change: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Sweep(config=PRESET).merge(**change)
    assert str(caught.value) == message


def test_a_good_sweep_file_round_trips(tmp_path: Path) -> None:
    """Every key read as written (grid values as overrides write them, the base config beside
    the file); written back under the file's keys, it reads the same."""
    path = tmp_path / "good.toml"
    path.write_text('config = "base.toml"\nname = "lr"\noverrides = ["train.max_steps=10"]\n'
                    'list = [["model.norm=none"], ["model.norm=rms"]]\nfixed_tokens = true\n'
                    'lr_scaling = "sqrt"\nseeds = 2\ndescription = "why"\n'
                    '[grid]\n"optim.lr_max" = [1e-3, 3e-3]\n"train.batch_size" = [4]\n')
    sweep = Sweep.from_file(path)
    assert sweep == Sweep(config=tmp_path / "base.toml", name="lr",
                          overrides=["train.max_steps=10"],
                          grid={"optim.lr_max": ["0.001", "0.003"], "train.batch_size": ["4"]},
                          points=[["model.norm=none"], ["model.norm=rms"]], fixed_tokens=True,
                          lr_scaling="sqrt", seeds=2, description="why")
    fields = {key: value for key, value in sweep.model_dump(mode="json", by_alias=True).items()
              if value is not None}  # no search table
    grid = fields.pop("grid")
    again = tmp_path / "again.toml"
    again.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in fields.items())
                     + "[grid]\n" + "".join(f"{json.dumps(key)} = {json.dumps(values)}\n"
                                           for key, values in grid.items()))
    assert Sweep.from_file(again) == sweep
    assert sweep.merge() == sweep
    merged = sweep.merge(grid={"optim.lr_max": ["1e-2"]}, overrides=["train.seed=3"],
                         points=[["model.norm=none"]], seeds=None, lr_scaling="linear")
    assert merged.grid == {"optim.lr_max": ["1e-2"], "train.batch_size": ["4"]}
    assert merged.overrides == ["train.max_steps=10", "train.seed=3"]
    assert len(merged.points) == 3 and (merged.seeds, merged.lr_scaling) == (2, "linear")


def test_a_dry_run_in_an_empty_folder_tells_the_cost_and_the_commands_for_the_data(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "sweep", "lr_sweep", "--variant", "cpu", "--dry-run")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "sweep runs/lr_sweep: 3 runs (3 points x 1 seed), 3 to run"  # a search
    assert lines[1] == ("model: 984,192 parameters: 853,120 in the blocks, 131,072 embedding "
                        "(tied: also the output)")
    assert re.fullmatch(r"time: [\d.e-]+ s a step, measured here: 3 steps on cpu after a "
                        r"warm-up \(random ids, not compiled\)", lines[2]), lines[2]
    assert re.fullmatch(r"  lr_max-0\.001: 400 steps, 819,200 tokens, ~[\d.]+ (s|min|h)  "
                        r"\[pending: run\]", lines[3]), lines[3]
    assert re.search(r"^in all: 2,457,600 tokens, ~[\d.]+ (s|min|h) for the 3 runs to go, one at a "
                     r"time \(evaluations not counted: data/tinystories-1k/valid.bin is not made "
                     r"yet\)$", out, re.M), out
    assert re.search(r"^search optim.lr_max from 0.003, x3: at most 8 values a series \(the cap\), "
                     r"1 series: later rounds add at most 5 runs for 1 series still searching, "
                     r"~[\d.]+ (s|min|h); at most ~[\d.]+ (s|min|h) in all$", out, re.M), out
    missing = out[out.index("missing token files"):].splitlines()
    assert missing[1:] == [
        "  data/tinystories-1k/train.bin:",
        "    lmlab data download tinystories",
        "    lmlab tokenizer train --input data/tinystories/train.txt --vocab-size 1024 "
        "--special-token '<|endoftext|>' --out data/tinystories-1k/tokenizer",
        "    lmlab tokenizer encode --tokenizer data/tinystories-1k/tokenizer --input "
        "data/tinystories/train.txt --out data/tinystories-1k/train.bin",
        "  data/tinystories-1k/valid.bin:",
        "    lmlab tokenizer encode --tokenizer data/tinystories-1k/tokenizer --input "
        "data/tinystories/valid.txt --out data/tinystories-1k/valid.bin"]
    assert not (tmp_path / "runs").exists()
    code, _, err = cli(capsys, "sweep", "lr_sweep", "--variant", "cpu")  # the real run refuses
    assert code == 1 and err == ("error: no such token file: data/tinystories-1k/train.bin, "
                                 "data/tinystories-1k/valid.bin (add --dry-run to see the "
                                 "commands that make them)\n")


def test_a_dry_run_counts_only_the_runs_left(tmp_path: Path, capsys: pytest.CaptureFixture
                                             ) -> None:
    """A finished point is skipped, a stopped one resumes for the steps it has left; the time of
    a step comes from the config's peak FLOP/s without --measure, evaluations included."""
    words = [*tiny_run(tmp_path), *STEPS_ONLY, "train.peak_flops=1e9"]
    the_plan = plan(Sweep(config=PRESET, name="s", overrides=words,
                          grid={"optim.lr_max": ["1e-3", "1e-2", "1e-1"]}))
    done, stopped, _ = (point.run_dir for point in the_plan.points)
    the_plan.root.mkdir(parents=True)
    (the_plan.root / "sweep.json").write_text(json.dumps(the_plan.describe()))  # a sweep's folder
    for point, run in zip(the_plan.points, (done, stopped), strict=False):
        run.root.mkdir()
        run.config.write_text(json.dumps(point.config.model_dump(mode="json")))
    done.set_status("finished")
    stopped.set_status("interrupted")
    stopped.checkpoint.parent.mkdir()
    stopped.checkpoint.write_bytes(b"")
    stopped.metrics.write_text(json.dumps({"step": 15, "tokens": 1920, "wall_time_s": 1.0}))
    code, out, err = cli(capsys, "sweep", str(PRESET), *words, "--name", "s", "--grid",
                         "optim.lr_max=1e-3,1e-2,1e-1", "--dry-run", "--no-measure")
    assert code == 0, err
    est = estimate(the_plan.points[0].config)
    mfu = default_mfu(est.parameters, compiled=False)[0]  # the MFU lmlab measured, eager
    step_s = 8 * CONTEXT * est.flops_per_token / (1e9 * mfu)
    assert f"time: {step_s:.3g} s a step, estimated: {mfu:.0%} MFU of train.peak_flops 1e+09" in out
    assert "lr_max-0.001: 30 steps, 3,840 tokens  [finished: skip]" in out
    assert "lr_max-0.01: 30 steps, 3,840 tokens, ~" in out and "left  [interrupted: resume]" in out
    assert "lr_max-0.1: 30 steps, 3,840 tokens, ~" in out and "[pending: run]" in out
    assert "in all: 5,760 tokens, " in out and "for the 2 runs to go" in out
    assert "evaluations not counted" not in out and "missing token files" not in out
    left, evaluations = run_seconds(the_plan.points[1].config, estimated_speed(
        the_plan.points[1].config), valid_tokens=1000, fraction_done=0.5)
    assert evaluations == 2  # of the steps 20 and 30 (the end)
    assert left == pytest.approx(15 * step_s + 2 * 8 * step_s / 3)  # 1,000 tokens: 8 windows
