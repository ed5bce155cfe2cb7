"""How a run ended, told once: the message, its stream and the exit code of each outcome."""

import doctest
from pathlib import Path

import pytest

from lmlab.training import outcome as outcome_module
from lmlab.training.outcome import Hints, RunResult, outcome, stopped
from tests.helpers.lmlab_cli import cli
from tests.helpers.readme import parse

RUN = Path("runs/tiny")
HINT = "lmlab train tinystories-cpu --resume"
RESTART = "lmlab train tinystories-cpu run.resume=auto"
HINTS = Hints(HINT, RESTART)


def test_a_finished_run_prints_its_validation_metrics_on_stdout_and_exits_0() -> None:
    result = RunResult(RUN, "finished", 30, 15_360, {"train/loss": 2.0, "val/loss": 2.34567,
                                                     "val/bpb": 1.1})
    done = outcome(result, HINTS)
    assert done.message == ("finished runs/tiny at step 30 (15,360 tokens): val/loss 2.346, "
                            "val/bpb 1.1")
    assert (done.exit_code, done.to_stderr) == (0, False)


def test_a_run_without_validation_says_so() -> None:
    done = outcome(RunResult(RUN, "finished", 3, 96, {"train/loss": 4.0}), HINTS)
    assert done.message.endswith("(96 tokens): no validation metrics logged")


def test_a_run_finished_before_says_it_had_already() -> None:
    result = RunResult(RUN, "finished", 30, 15_360, {"val/loss": 2.5}, already_done=True)
    done = outcome(result, HINTS)
    assert done.message == "had already finished runs/tiny at step 30 (15,360 tokens): val/loss 2.5"
    assert (done.exit_code, done.to_stderr) == (0, False)


def test_an_interrupted_run_names_the_command_that_resumes_it_and_exits_130() -> None:
    done = outcome(RunResult(RUN, "interrupted", 12, 6_144), HINTS)
    assert done.message == f"interrupted at step 12; checkpoint saved. Resume with: {HINT}"
    assert (done.exit_code, done.to_stderr) == (130, True)


def test_a_diverged_run_is_an_error_with_its_reason_and_exits_1() -> None:
    reason = "train/loss is nan at step 7"
    done = outcome(RunResult(RUN, "diverged", 7, 3_584, reason=reason), HINTS)
    assert done.message == f"error: run diverged: {reason}; metrics kept in runs/tiny"
    assert (done.exit_code, done.to_stderr) == (1, True)


@pytest.mark.parametrize("saved", [True, False])
def test_a_run_stopped_at_once_or_failed_names_the_command_that_continues_it(
        tmp_path, saved: bool) -> None:
    """A second Ctrl-C or a crash leaves no result: the line says how it ended, and resumes from
    the checkpoint when there is one, else starts the run afresh (``--resume`` would fail)."""
    if saved:
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "last.pt").write_bytes(b"")
    hint = f"Resume with: {HINT}" if saved else f"It saved no checkpoint: start it again with: " \
                                                f"{RESTART}"
    done = stopped(tmp_path, KeyboardInterrupt(), HINTS)
    assert done.message == ("interrupted at once (the steps since the last checkpoint are not "
                            f"saved). {hint}")
    assert (done.exit_code, done.to_stderr) == (130, True)
    done = stopped(tmp_path, RuntimeError("CUDA out of memory.\nTried to allocate"), HINTS)
    assert done.message == f"error: run failed: RuntimeError: CUDA out of memory. {hint}"
    assert (done.exit_code, done.to_stderr) == (1, True)


def test_docstring_examples() -> None:
    assert doctest.testmod(outcome_module).failed == 0


@pytest.mark.parametrize(("status", "code", "told"), [
    ("interrupted", 130, "interrupted at step 5; checkpoint saved. Resume with: lmlab train "),
    ("diverged", 1, "error: run diverged: train/loss is nan at step 5; metrics kept in "),
])
def test_quickstart_ends_a_stopped_run_the_same_way(tmp_path, monkeypatch, capsys, status, code,
                                                    told) -> None:
    """`lmlab quickstart` tells a run that did not finish as `lmlab train` does, and its resume
    command trains the same run: the quickstart's data and run folder, the same overrides."""
    out = tmp_path / "qs"
    reason = "train/loss is nan at step 5" if status == "diverged" else None
    monkeypatch.setattr("lmlab.quickstart.quickstart", lambda *args, **kwargs: RunResult(
        out / "tinystories-cpu", status, 5, 640, reason=reason))
    got, said, err = cli(capsys, "quickstart", "model.d_model=64", "--out", out, "--steps", 9)
    assert (got, said) == (code, "") and err.startswith(told) and len(err.splitlines()) == 1
    if status == "interrupted":
        words = err.split("Resume with: ", 1)[1].split()
        assert words[3:6] == ["model.d_model=64", "train.max_steps=9",
                              "train.schedule_over_time=false"]
        assert f"data.train_path={out / 'data' / 'train.bin'}" in words
        assert f"run.runs_dir={out}" in words and words[-1] == "--resume"
        parse(words)  # a command the CLI accepts
