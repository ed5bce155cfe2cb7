"""Data-parallel training on CPUs: 2 gloo processes started by torchrun (`lmlab train --nproc 2`).

The parity checks compare logged losses with ``rtol=1e-5``: the same windows are seen in every
split of a global batch (see :class:`lmlab.training.batches.RandomBatches`), and only the order
of float32 sums differs (a gradient averaged over 2 ranks vs. over one batch twice the size). A
resume under the same world size is exact.
"""

import doctest
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lmlab.config import load_config
from lmlab.errors import ConfigError
from lmlab.training import distributed
from lmlab.training import torchrun as torchrun_wrapper
from lmlab.training.distributed import World
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from tests.helpers.lmlab_cli import cli
from tests.helpers.tiny_runs import tiny_run

REPO = Path(__file__).resolve().parents[1]
RTOL = 1e-5
STEPS = ("train.max_steps=8", "optim.cosine_cycle_iters=8", "train.eval_interval=4",
         "train.ckpt_interval=4")
FAILING_RANK = """\
import os

if os.environ.get("RANK") == "1":  # rank 1 fails at step 6, while rank 0 waits for it
    from lmlab.training.batches import RandomBatches
    from lmlab.errors import DataError

    draw, drawn = RandomBatches.next_step, []

    def failing(self):
        if len(drawn) == 5:
            raise DataError("rank 1 cannot read its batch")
        drawn.append(1)
        return draw(self)

    RandomBatches.next_step = failing
"""
"""A ``sitecustomize.py``: Python runs it as every process starts, so rank 1 of an unchanged
``lmlab train --nproc 2`` job fails."""


def torchrun(*args: str, site: Path | None = None) -> subprocess.CompletedProcess:
    """``lmlab train --nproc 2 ARGS`` (with ``site`` on the path: its ``sitecustomize.py`` runs
    in every process), bounded by a timeout so a hang fails the test."""
    path = [str(REPO / "src"), *([str(site)] if site else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lmlab", "train", "--nproc", "2", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def assert_succeeded(done: subprocess.CompletedProcess) -> None:
    """The job exited 0; if not, the failure shows both streams (how far the ranks got, too)."""
    assert done.returncode == 0, f"{done.stderr}\n--- stdout (end) ---\n{done.stdout[-3000:]}"


def overrides(root: Path, *extra: str) -> list[str]:
    """The override words of a tiny 8-step run under ``root``."""
    return tiny_run(root, *STEPS, *extra)


def words(root: Path, *extra: str) -> list[str]:
    """``lmlab train`` arguments of that run (on an empty config file)."""
    (root / "empty.toml").touch()
    return [str(root / "empty.toml"), *overrides(root, *extra), "--no-progress"]


def records(run: Path) -> list[dict]:
    """The run's metrics without timings (which differ from run to run)."""
    timings = ("wall_time_s", "train_time_s", "train/tokens_per_s")
    return [{k: v for k, v in r.items() if k not in timings} for r in RunDir(run).read_metrics()]


def assert_close(actual: list[dict], expected: list[dict]) -> None:
    assert [r.keys() for r in actual] == [r.keys() for r in expected]
    for got, want in zip(actual, expected, strict=True):
        assert got == pytest.approx(want, rel=RTOL), got["step"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ddp")


@pytest.fixture(scope="module")
def two_ranks(root: Path) -> Path:
    """An uninterrupted 8-step run on 2 ranks x batch 4."""
    done = torchrun(*words(root, "train.batch_size=4", "run.name=two_ranks"))
    assert_succeeded(done)
    assert done.stdout.count("finished") == 1  # rank 0 speaks for the job
    return root / "runs" / "two_ranks"


@pytest.fixture(scope="module")
def failed_at_6(root: Path) -> tuple[subprocess.CompletedProcess, float, Path]:
    """The same run with rank 1 failing at step 6 (after the checkpoint of step 4): the job's
    result, how long it took and its run directory."""
    site = root / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAILING_RANK)
    started = time.monotonic()
    done = torchrun(*words(root, "train.batch_size=4", "run.name=failed"), site=site)
    return done, time.monotonic() - started, root / "runs" / "failed"


def resumable_copy(run: Path, name: str) -> Path:
    shutil.copytree(run, run.parent / name)
    return run.parent / name


@pytest.mark.slow
def test_two_ranks_equal_one_process_with_twice_the_batch(root: Path, two_ranks: Path) -> None:
    one = train(load_config(None, overrides(root, "train.batch_size=8", "run.name=one")))
    logged = records(two_ranks)
    assert [r["step"] for r in logged if "train/loss" in r] == list(range(1, 9))  # logged once
    assert logged[-1]["tokens"] == 8 * 8 * 16  # the global batch: 2 ranks x 4 sequences
    assert_close(logged, records(one.run_dir))


def test_grad_accum_equals_the_larger_batch(tmp_path: Path) -> None:
    accumulated = train(load_config(None, overrides(
        tmp_path, "train.batch_size=4", "train.grad_accum=2", "run.name=accumulated")))
    whole = train(load_config(None, overrides(tmp_path, "train.batch_size=8", "run.name=whole")))
    assert_close(records(accumulated.run_dir), records(whole.run_dir))


@pytest.mark.slow
def test_a_failing_rank_ends_the_job_with_its_error(failed_at_6: tuple) -> None:
    done, seconds, run = failed_at_6
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert "error: rank 1: rank 1 cannot read its batch" in lines
    assert lines[-1] == "error: the job stopped: rank 1 failed (exit code 1)"
    # Rank 0 says in one line why it stopped, unless torchrun ended it first; no tracebacks.
    assert all(line.startswith(("error: rank 1:", "error: rank 0: stopped: another rank failed",
                                "error: the job stopped")) for line in lines), done.stderr
    assert seconds < 90  # torchrun ends rank 0 too: no hang
    assert RunDir(run).status == "failed"
    assert torch.load(RunDir(run).checkpoint, weights_only=True)["iteration"] == 4


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_at_a_checkpoint_quietly(tmp_path: Path) -> None:
    """Ctrl-C reaches the launcher, torchrun and both ranks (one process group): the ranks save a
    checkpoint and say how to resume; torchrun adds no traceback; the exit code is 130."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "lmlab", "train", "--nproc", "2",
               *words(tmp_path, "train.batch_size=4", "train.max_steps=100000")]
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    metrics = tmp_path / "runs" / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 90
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 3):
        assert job.poll() is None and time.monotonic() < deadline, "the job never trained"
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGINT)
    _, err = job.communicate(timeout=120)
    assert job.returncode == 130, err
    assert err.startswith("interrupted at step ") and "Traceback" not in err, err
    assert RunDir(tmp_path / "runs" / "run").status == "interrupted"


def test_only_collective_failures_count_as_a_lost_rank() -> None:
    gloo = RuntimeError("[/x/gloo/transport/tcp/pair.cc:553] Connection closed by peer [::1]:9")
    assert distributed._lost_a_peer(gloo) and distributed._lost_a_peer(RuntimeError("NCCL error"))
    assert not distributed._lost_a_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


@pytest.mark.parametrize("module", [distributed, torchrun_wrapper])
def test_docstring_examples(module) -> None:
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.slow
def test_resume_under_two_ranks_equals_an_uninterrupted_run(root: Path, two_ranks: Path,
                                                            failed_at_6: tuple) -> None:
    resumable_copy(failed_at_6[2], "resumed2")
    done = torchrun(*words(root, "train.batch_size=4", "run.name=resumed2"), "--resume")
    assert_succeeded(done)
    assert records(root / "runs" / "resumed2") == records(two_ranks)


@pytest.mark.slow
def test_resume_on_one_process_keeping_the_global_batch(root: Path, two_ranks: Path,
                                                        failed_at_6: tuple) -> None:
    resumable_copy(failed_at_6[2], "resumed1")
    result = train(load_config(None, overrides(root, "train.batch_size=8", "run.name=resumed1",
                                               "run.resume=must")))
    assert (result.status, result.step) == ("finished", 8)
    assert_close(records(result.run_dir), records(two_ranks))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--nproc", "0"], "error: --nproc must be at least 1, got 0"),
        (["train.dist_backend=nccl"], "error: train.dist_backend=nccl needs CUDA GPUs"),
        (["train.world_size=2"], "error: train.world_size=2 does not match the 1 process"),
    ],
)
def test_bad_distributed_input_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   args: list[str], message: str) -> None:
    code, _, err = cli(capsys, "train", *words(tmp_path), *args)
    assert code == 1
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_each_rank_takes_its_own_gpu_and_rejects_a_fixed_one() -> None:
    cpu = torch.device("cpu")
    assert World(rank=1, local_rank=1, size=2).device(cpu) == cpu
    with pytest.raises(ConfigError, match="names one GPU, but torchrun started 2"):
        World(rank=1, local_rank=1, size=2).device(torch.device("cuda:0"))


def test_a_parallel_sweep_gives_each_run_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """`lmlab sweep --parallel N` runs one training process per visible GPU
    (lmlab/experiments/runner.py)."""
    from lmlab.experiments import runner

    monkeypatch.setattr(runner, "_visible_gpus", lambda: ["0", "1", "2"])
    assert [env["CUDA_VISIBLE_DEVICES"] for env in runner.worker_envs(3)] == ["0", "1", "2"]
    assert [env["CUDA_VISIBLE_DEVICES"] for env in runner.worker_envs(4)][3] == "0"  # shared
