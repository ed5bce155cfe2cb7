"""Runs that survive the machine: repeated SIGKILLs, a second writer, a full disk, a read-only
folder. Each fault must end in one line that names the file and the cause, lose nothing that was
saved, and leave a run that `--resume` finishes with the losses of a run that never failed.

The slower ones are marked ``faults`` (``pytest -m faults`` runs only them; a plain ``pytest``,
as ``.ci/run`` runs it, includes them). A full disk is a real 3 MB tmpfs when the tests run as
root (mounting needs it), else a patched write that raises ``ENOSPC``.
"""

import errno
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lmlab.config import load_config
from lmlab.training import checkpoint
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from tests.helpers.lmlab_cli import cli
from tests.helpers.paths import PRESETS
from tests.helpers.tiny_runs import losses, tiny_run, wait_for_step

REPO = Path(__file__).resolve().parents[1]
STEPS = ["train.max_steps=40", "optim.cosine_cycle_iters=40", "train.ckpt_interval=5",
         "train.eval_interval=0", "train.log_interval=1"]


def _start(words: list[str], *extra: str) -> subprocess.Popen:
    """`lmlab train` in its own process, as a user's terminal would run it."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    config = PRESETS / "experiments" / "cpu-base.toml"
    return subprocess.Popen([sys.executable, "-m", "lmlab", "train", str(config), *words,
                             *extra, "--no-progress"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _config(words: list[str]):
    return load_config(PRESETS / "experiments" / "cpu-base.toml", words)


def _no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def reference(tmp_path: Path) -> dict[int, float]:
    """The losses of the same run, uninterrupted."""
    return losses(train(_config([*tiny_run(tmp_path), *STEPS, "run.name=straight"])).run_dir)


@pytest.mark.faults
@pytest.mark.parametrize("compile", ["false", "true"], ids=["eager", "compiled"])
def test_sigkills_at_random_moments_resume_to_the_same_losses(tmp_path: Path,
                                                              compile: str) -> None:
    """Compiled too: each process compiles anew, and the losses still match to the last digit
    (``device.deterministic_kernels``)."""
    words = [*tiny_run(tmp_path), *STEPS, f"train.compile={compile}", "run.resume=auto"]
    reference = losses(train(_config([*words, "run.name=straight"])).run_dir)
    run = tmp_path / "runs" / "run"
    rng = random.Random(15)
    for _ in range(3):
        proc = _start(words)
        wait_for_step(run, max(losses(run), default=0) + rng.randint(1, 9), proc, timeout_s=300)
        time.sleep(rng.uniform(0, 0.05))  # anywhere in a step: mid-write of a log or checkpoint
        proc.kill()
        proc.wait()
    result = train(_config(words))
    assert (result.status, result.step) == ("finished", 40)
    assert losses(run) == reference
    steps = [r["step"] for r in RunDir(run).read_metrics() if "train/loss" in r]
    assert steps == sorted(set(steps))  # no step logged twice


@pytest.mark.faults
def test_a_second_writer_stops_before_writing(tmp_path: Path, capsys) -> None:
    words = [*tiny_run(tmp_path), *STEPS, "train.max_steps=100000"]
    run = RunDir(tmp_path / "runs" / "run")
    first = _start(words)
    try:
        wait_for_step(run.root, 6, first)
        config = PRESETS / "experiments" / "cpu-base.toml"
        code, out, err = cli(capsys, "train", config, *words, "--resume")
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
        assert err.startswith(f"error: {run.root} is in use: pid {first.pid} on ")
        assert run.status == "running"
        steps = [r["step"] for r in run.read_metrics() if "train/loss" in r]
        assert steps == list(range(1, len(steps) + 1))  # one writer's log, not interleaved

        first.kill()  # the OS lets go of a dead process's lock at once
        first.wait()
        # The first writer ran on while the second was refused; end a few steps past its log.
        end = max(r["step"] for r in run.read_metrics() if "train/loss" in r) + 3
        resumed = train(_config([*words, f"train.max_steps={end}", "run.resume=must"]))
        assert resumed.status == "finished" and resumed.step == end
    finally:
        first.kill()


@pytest.mark.faults
def test_a_second_sweep_on_one_folder_skips_the_point_the_first_holds(tmp_path: Path,
                                                                       capsys) -> None:
    words = [w for w in tiny_run(tmp_path) if not w.startswith("run.name")]
    config = PRESETS / "experiments" / "cpu-base.toml"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = ["sweep", str(config), *words, *STEPS, "train.max_steps=100000", "--grid",
            "optim.lr_max=1e-2", "--name", "s"]
    first = subprocess.Popen([sys.executable, "-m", "lmlab", *args], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        point = tmp_path / "runs" / "s" / "lr_max-0.01"
        wait_for_step(point, 3, first)
        code, out, err = cli(capsys, *args)
        assert code == 0
        assert f"lr_max-0.01: in use by pid {first.pid} on " in err and "skipped" in err
        assert RunDir(point).status == "running"
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs (a real full disk) when running as root, else None."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
        capture_output=True).returncode == 0
    yield disk if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.faults
def test_a_full_disk_during_a_checkpoint_ends_cleanly(tmp_path: Path, reference, small_disk,
                                                      monkeypatch, capsys) -> None:
    runs = small_disk if small_disk is not None else tmp_path / "runs2"
    words = [*tiny_run(tmp_path), *STEPS, f"run.runs_dir={runs}"]
    run = RunDir(runs / "run")
    checkpoint_bytes = (tmp_path / "runs" / "straight" / "checkpoints" / "last.pt").stat().st_size
    if small_disk is not None:  # leave room for the first checkpoint, not for a second beside it
        free = os.statvfs(runs).f_bavail * os.statvfs(runs).f_frsize
        (runs / "filler").write_bytes(b"\0" * (free - int(1.5 * checkpoint_bytes) - 30_000))
    else:
        real_save, calls = torch.save, []

        def fills_up(obj, f) -> None:  # the second checkpoint finds the disk full
            calls.append(1)
            if len(calls) == 2:
                f.write(b"\0" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device")
            real_save(obj, f)

        monkeypatch.setattr(checkpoint.torch, "save", fills_up)
    config = PRESETS / "experiments" / "cpu-base.toml"
    code, out, err = cli(capsys, "train", config, *words, "--no-progress")
    monkeypatch.undo()
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: no space left on device writing {run.checkpoint} "
                          f"(last good checkpoint: step 5, {run.checkpoint};")
    assert _no_temporary_files(runs)
    assert torch.load(run.checkpoint, weights_only=True)["iteration"] == 5  # intact, loadable
    if small_disk is not None:
        (runs / "filler").unlink()  # space freed
    else:
        assert run.status == "failed"
    resumed = train(_config([*words, "run.resume=must"]))
    assert (resumed.status, resumed.step) == ("finished", 40)
    assert losses(run.root) == reference


@pytest.mark.faults
def test_a_read_only_run_directory_ends_cleanly(tmp_path: Path, reference,
                                                monkeypatch, capsys) -> None:
    words = [*tiny_run(tmp_path), *STEPS]
    run = RunDir(tmp_path / "runs" / "run")
    real_replace = os.replace

    def read_only(src, dst) -> None:  # root writes anywhere: the folder's refusal, simulated
        if Path(dst).parent == run.checkpoint.parent and run.checkpoint.exists():
            raise PermissionError(errno.EACCES, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", read_only)
    config = PRESETS / "experiments" / "cpu-base.toml"
    code, _, err = cli(capsys, "train", config, *words, "--no-progress")
    monkeypatch.undo()
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: permission denied writing {run.checkpoint} (last good "
                          f"checkpoint: step 5")
    assert _no_temporary_files(run.root) and run.status == "failed"
    resumed = train(_config([*words, "run.resume=must"]))
    assert resumed.step == 40 and losses(run.root) == reference


LONG = ["train.max_steps=200", "optim.cosine_cycle_iters=200"]
"""A run still going when the test stops it, short enough to finish when resumed."""


@pytest.mark.faults
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_before_the_first_checkpoint_saves_one_and_the_hint_resumes(
        tmp_path: Path, capsys, sig: signal.Signals) -> None:
    words = [*tiny_run(tmp_path), *STEPS, *LONG, "train.ckpt_interval=0"]
    run = RunDir(tmp_path / "runs" / "run")
    proc = _start(words)
    wait_for_step(run.root, 3, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    last = err.strip().splitlines()[-1]
    assert (proc.returncode, out) == (130, ""), err
    assert last.startswith("interrupted at step ") and "; checkpoint saved. Resume with: " in last
    assert run.status == "interrupted" and run.checkpoint.exists()
    hint = shlex.split(last.split("Resume with: ", 1)[1])
    code, said, err = cli(capsys, *hint[1:])
    assert code == 0 and said.startswith(f"finished {run.root} at step 200 "), err


@pytest.mark.faults
@pytest.mark.parametrize("saved", [True, False], ids=["checkpoint", "no-checkpoint"])
def test_the_same_command_after_a_sigkill_names_one_that_works(tmp_path: Path, capsys,
                                                                saved: bool) -> None:
    words = [*tiny_run(tmp_path), *STEPS, *LONG, f"train.ckpt_interval={5 if saved else 0}"]
    run = RunDir(tmp_path / "runs" / "run")
    proc = _start(words)
    wait_for_step(run.root, 7, proc)
    proc.kill()
    proc.wait()
    config = PRESETS / "experiments" / "cpu-base.toml"
    code, _, err = cli(capsys, "train", config, *words)  # the same command, again
    assert code == 1 and len(err.splitlines()) == 1
    fix = "--resume" if saved else "run.resume=auto"
    assert f"already exists: {'resume it with' if saved else 'it has no checkpoint'}" in err
    assert fix in err
    code, said, err = cli(capsys, "train", config, *words, fix, "--no-progress")
    assert code == 0 and said.startswith(f"finished {run.root} at step 200 "), err
