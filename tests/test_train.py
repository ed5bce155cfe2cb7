"""`lmlab train` / `lmlab eval` end to end on tiny models: files, metrics, exact resume, signals,
divergence, time budget, bits per byte, and the error for each kind of bad input."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lmlab.config import load_config
from lmlab.optim import learning_rate
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from lmlab.weights import load_model
from tests.helpers.lmlab_cli import cli
from tests.helpers.paths import PRESETS
from tests.helpers.tiny_runs import (
    CONTEXT,
    PRESET,
    STEPS_ONLY,
    VOCAB,
    losses,
    pattern_tokens,
    tiny_run,
    wait_for_step,
    write_tokens,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = {"step", "tokens", "wall_time_s", "train_time_s"}
TRAIN_KEYS = {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s"}
VAL_KEYS = {"val/loss", "val/ppl", "val/bpb"}


def test_train_writes_the_run_directory_and_learns(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    code, out, _ = cli(capsys, "train", "tinystories-cpu", *tiny_run(tmp_path),
                       "train.time_budget_s=none", "train.schedule_over_time=false",
                       "model.tie_embeddings=false", "--no-progress")
    assert code == 0, out
    run = RunDir(tmp_path / "runs" / "run")
    assert f"finished {run.root} at step 30" in out and "val/bpb" in out
    assert run.status == "finished"
    config = json.loads(run.config.read_text())
    assert config["train"]["max_steps"] == 30 and config["model"]["d_model"] == 32
    assert json.loads(run.env.read_text())["torch"] == torch.__version__
    assert run.checkpoint.is_file()
    records = run.read_metrics()
    assert all(SCHEMA <= r.keys() for r in records)
    train_records = [r for r in records if "train/loss" in r]
    val_records = [r for r in records if "val/loss" in r]
    assert [r["step"] for r in train_records] == list(range(1, 31))
    assert all(TRAIN_KEYS <= r.keys() for r in train_records)
    assert [r["step"] for r in val_records] == [10, 20, 30]
    assert all(VAL_KEYS <= r.keys() for r in val_records)
    assert train_records[-1]["train/loss"] < 0.5 * train_records[0]["train/loss"]
    assert val_records[-1]["val/loss"] < 0.5 * math.log(VOCAB)
    assert val_records[-1]["val/ppl"] == pytest.approx(math.exp(val_records[-1]["val/loss"]))
    steps = [r["step"] for r in records]
    assert steps == sorted(steps)


def _measured(records: list[dict]) -> list[dict]:
    """The records without their timings, which differ from run to run."""
    timings = ("wall_time_s", "train_time_s", "train/tokens_per_s")
    return [{k: v for k, v in r.items() if k not in timings} for r in records]


@pytest.mark.parametrize("sampling", ["random", "epochs"])
def test_resumed_run_equals_an_uninterrupted_one(tmp_path: Path, sampling: str) -> None:
    """With 1,000 training tokens a pass is 62 windows of 16: the split at step 8 (64 windows)
    falls just after the first pass, and the run makes 2.5 passes."""
    common = tiny_run(tmp_path, "train.max_steps=20", "optim.cosine_cycle_iters=20",
                      "train.eval_interval=5", "train.ckpt_interval=5", f"data.sampling={sampling}",
                      train_tokens=1_000)
    train(load_config(None, [*common, "run.name=straight"]))
    first = train(load_config(None, [*common, "run.name=split", "train.max_steps=8"]))
    assert first.step == 8  # finished, with a final evaluation at step 8
    resumed = train(load_config(None, [*common, "run.name=split", "run.resume=must"]))
    assert resumed.status == "finished" and resumed.step == 20
    straight = RunDir(tmp_path / "runs" / "straight").read_metrics()
    split = [r for r in RunDir(tmp_path / "runs" / "split").read_metrics()
             if not (r["step"] == 8 and "val/loss" in r)]
    assert _measured(split) == _measured(straight)


def test_resume_auto_and_a_finished_run(tmp_path: Path) -> None:
    words = tiny_run(tmp_path, "train.max_steps=4", "run.resume=auto")
    assert train(load_config(None, words)).step == 4  # nothing to resume: starts afresh
    again = train(load_config(None, words))  # already finished: nothing more to do
    assert (again.status, again.step) == ("finished", 4)
    assert len(losses(again.run_dir)) == 4


def _start(tmp_path: Path, *words: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "lmlab", "train", "tinystories-cpu",
                             *tiny_run(tmp_path), *words, "train.time_budget_s=none",
                             "train.schedule_over_time=false", "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("compile", ["false", "true"], ids=["eager", "compiled"])
def test_sigkill_between_checkpoints_resumes_from_the_last_one(tmp_path: Path,
                                                               compile: str) -> None:
    """Killed mid-interval (the logged loss averages 4 steps, checkpoints every 5 steps); the
    preset's dropout, Muon and ``native`` precision, eager and compiled as the preset runs."""
    words = ("train.max_steps=1000", "optim.cosine_cycle_iters=1000", "train.ckpt_interval=5",
             "train.eval_interval=0", "train.log_interval=4", f"train.compile={compile}")
    run = tmp_path / "runs" / "run"
    proc = _start(tmp_path, *words)
    wait_for_step(run, 12, proc, timeout_s=300)
    proc.kill()
    proc.wait()
    saved_step = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["iteration"]
    assert saved_step >= 10 and saved_step % 5 == 0
    before = losses(run)
    preset = PRESETS / "tinystories-cpu.toml"
    config = [*tiny_run(tmp_path), *words, "train.max_steps=30", "train.ckpt_interval=0",
              "train.time_budget_s=none", "train.schedule_over_time=false"]
    result = train(load_config(preset, [*config, "run.resume=must"]))
    assert (result.status, result.step) == ("finished", 30)
    after = losses(run)
    assert sorted(after) == [*range(4, 30, 4), 30]  # records past the checkpoint were replaced
    assert all(after[s] == before[s] for s in after if s <= saved_step)
    straight = train(load_config(preset, [*config, "run.name=straight"]))
    assert losses(straight.run_dir) == after


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["native", "float32"])
def test_two_compiled_runs_of_one_seed_log_the_same_metrics(tmp_path: Path, dtype: str) -> None:
    """The CPU preset as it runs (compiled, dropout, Muon, ``native`` precision) and in float32:
    every loss, gradient norm and validation score equal to the last digit, run after run
    (without ``device.deterministic_kernels`` they part within a few steps)."""
    common = tiny_run(tmp_path, *STEPS_ONLY, "train.compile=true", f"train.dtype={dtype}",
                      "train.max_steps=40")
    runs = [train(load_config(PRESET, [*common, f"run.name=r{i}"])) for i in range(2)]
    first, second = (_measured(RunDir(run.run_dir).read_metrics()) for run in runs)
    assert len(first) == 40 + 4 and first == second  # 40 steps, 4 evaluations


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_stops(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "run"
    proc = _start(tmp_path, "train.max_steps=10000", "train.ckpt_interval=0",
                  "train.eval_interval=0")
    wait_for_step(run, 3, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    assert RunDir(run).status == "interrupted"
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == max(losses(run))


def test_divergence_stops_the_run_and_keeps_the_metrics(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    code, _, err = cli(capsys, "train", "tinystories-cpu", *tiny_run(tmp_path),
                       "train.time_budget_s=none", "train.schedule_over_time=false",
                       "optim.lr_max=10", "optim.warmup_iters=0", "optim.grad_clip=none",
                       "train.max_steps=200", "--no-progress")
    assert code == 1
    run = RunDir(tmp_path / "runs" / "run")
    assert run.status == "diverged" and "at step" in run.reason
    assert err == f"error: run diverged: {run.reason}; metrics kept in {run.root}\n"
    steps = sorted(losses(run.root))
    assert steps and steps[-1] < 200


def test_time_budget_stops_with_a_final_eval(tmp_path: Path) -> None:
    budget = 3.0
    result = train(load_config(None, tiny_run(tmp_path, "train.max_steps=none",
                                              f"train.time_budget_s={budget}",
                                              "train.schedule_over_time=true",
                                              "train.eval_interval=0")))
    assert result.status == "finished"
    records = RunDir(result.run_dir).read_metrics()
    final = records[-1]
    assert "val/loss" in final and final["step"] == result.step
    step_ends = [r["train_time_s"] for r in records if "train/loss" in r]  # logged every step
    # Stops after the step that crosses it (times are logged rounded to the millisecond, so the
    # step before may read exactly the budget).
    assert step_ends[-2] <= budget <= step_ends[-1]
    assert final["train_time_s"] == step_ends[-1]  # the final evaluation does not count


def test_learning_rate_over_steps_or_time(tmp_path: Path) -> None:
    over_time = load_config(None, tiny_run(tmp_path, "train.max_steps=none",
                                           "train.time_budget_s=100",
                                           "train.schedule_over_time=true"))
    assert learning_rate(over_time, 1, 0.0) == pytest.approx(1e-2 / 3)  # warmup is in steps
    assert learning_rate(over_time, 3, 0.0) == pytest.approx(1e-2)
    assert learning_rate(over_time, 50, 50.0) == pytest.approx((1e-2 + 1e-3) / 2)
    assert learning_rate(over_time, 99, 100.0) == pytest.approx(1e-3)
    by_steps = load_config(None, tiny_run(tmp_path, "train.max_steps=11"))
    assert learning_rate(by_steps, 7, 0.0) == pytest.approx((1e-2 + 1e-3) / 2)
    assert learning_rate(by_steps, 11, 0.0) == pytest.approx(1e-3)
    endless = load_config(None, tiny_run(tmp_path, "train.max_steps=none",
                                         "train.time_budget_s=100"))
    assert learning_rate(endless, 10_000, 99.0) == pytest.approx(1e-2)  # no end known: flat


def test_logged_bits_per_byte_match_a_hand_computation(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    valid = write_tokens(tmp_path / "v.bin", pattern_tokens(2 * CONTEXT + 1, VOCAB, seed=5),
                         VOCAB, source_bytes=123)
    words = tiny_run(tmp_path, "train.max_steps=5", f"data.valid_path={valid}")
    result = train(load_config(None, words))
    model, _ = load_model(result.run_dir)
    ids = torch.tensor(pattern_tokens(2 * CONTEXT + 1, VOCAB, seed=5))
    nats = 0.0
    for start in (0, CONTEXT):  # two windows cover every target once
        window = ids[start:start + CONTEXT + 1]
        with torch.no_grad():
            logits = model(window[None, :-1])[0]
        nats += F.cross_entropy(logits, window[1:], reduction="sum").item()
    logged = RunDir(result.run_dir).read_metrics()[-1]
    assert logged["val/bpb"] == pytest.approx(nats / (math.log(2) * 123), rel=1e-5)
    assert logged["val/loss"] == pytest.approx(nats / (2 * CONTEXT), rel=1e-5)

    code, out, _ = cli(capsys, "eval", str(result.run_dir), "--data", str(valid), "--device",
                       "cpu")
    assert code == 0
    assert f"bpb {nats / (math.log(2) * 123):.4f}" in out and "loss" in out and "ppl" in out


@pytest.mark.slow
def test_the_cpu_preset_trains(tmp_path: Path) -> None:
    """The preset's own model, optimizer and ``torch.compile``, for two steps on synthetic data
    (a model change that breaks compiling would break the quickstart)."""
    preset = PRESETS / "tinystories-cpu.toml"
    vocab_size = load_config(preset, ["data.train_path=t", "data.valid_path=v"]).model.vocab_size
    train_bin = write_tokens(tmp_path / "t.bin", pattern_tokens(5000, vocab_size), vocab_size)
    result = train(load_config(preset, [
        f"data.train_path={train_bin}", f"data.valid_path={train_bin}", "train.max_steps=2",
        "optim.warmup_iters=1", "train.time_budget_s=none", "train.schedule_over_time=false",
        "train.eval_batches=1", f"run.runs_dir={tmp_path}"]))
    assert result.status == "finished" and math.isfinite(result.metrics["val/loss"])


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["train.batchsize=3"], "error: unknown config key 'train.batchsize' (valid train keys:"),
        (["optim.lr_max=-1"], "error: "),
        (["data.train_path=/nonexistent.bin"], "error: /nonexistent.bin: no such token file"),
        (["model.vocab_size=32"], "beyond the model's vocabulary of 32 (model.vocab_size)"),
        (["model.context_length=5000"], "fewer than one context of 5000 + 1"),
        (["--resume"], "error: cannot resume: "),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture,
                                       words: list[str], message: str) -> None:
    code, _, err = cli(capsys, "train", "tinystories-cpu", *tiny_run(tmp_path),
                       "train.time_budget_s=none", "train.schedule_over_time=false", *words)
    assert code == 1
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_existing_runs_and_bad_checkpoints(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    words = [*tiny_run(tmp_path), "train.max_steps=2", "optim.warmup_iters=1"]
    train(load_config(None, words))
    with pytest.raises(Exception, match="already exists: resume it with --resume"):
        train(load_config(None, words))
    code, _, err = cli(capsys, "train", "tinystories-cpu", *words,
                       "train.time_budget_s=none", "train.schedule_over_time=false",
                       "model.d_model=64", "--resume")
    assert code == 1 and "different model: model.d_model=32 (config has 64)" in err
    checkpoint = tmp_path / "runs" / "run" / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    code, _, err = cli(capsys, "train", "tinystories-cpu", *words,
                       "train.time_budget_s=none", "train.schedule_over_time=false", "--resume")
    assert code == 1 and "is truncated or not a checkpoint" in err and err.count("\n") == 1


def test_help_explains_every_option_and_config_key(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = cli(capsys, "train", "--help")
    assert code == 0
    for option in ("--resume", "--progress", "OVERRIDES", "CONFIG"):
        assert option.lower() in out.lower()
    text = " ".join(out.split())  # the help is wrapped to the terminal
    for key in ("model.vocab_size", "optim.grad_clip", "data.valid_path", "train.eval_batches",
                "train.time_budget_s", "train.schedule_over_time", "run.trackers"):
        assert key in text
    code, out, _ = cli(capsys, "eval", "--help")
    assert code == 0 and "--data" in out and "--batch-size" in out


@pytest.mark.parametrize(("shape", "expected"), [
    ("linear", [1e-2, 7.75e-3, 5.5e-3, 3.25e-3, 1e-3]),
    ("wsd", [1e-2, 1e-2, 1e-2, 5.5e-3, 1e-3]),  # flat, then the last half decays linearly
])
def test_linear_and_warmup_stable_decay_schedules(tmp_path: Path, shape: str,
                                                  expected: list[float]) -> None:
    config = load_config(None, tiny_run(tmp_path, "train.max_steps=11", f"optim.schedule={shape}",
                                        "optim.decay_fraction=0.5"))
    got = [learning_rate(config, step, 0.0) for step in (3, 5, 7, 9, 11)]  # warmup is 3 steps
    assert got == pytest.approx(expected)
    over_time = load_config(None, tiny_run(tmp_path, "train.max_steps=none",
                                           "train.time_budget_s=100",
                                           "train.schedule_over_time=true",
                                           f"optim.schedule={shape}", "optim.decay_fraction=0.5"))
    assert [learning_rate(over_time, 50, t) for t in (0, 25, 50, 75, 100)] == pytest.approx(
        expected)
