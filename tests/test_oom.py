"""A device out of memory is one line, a ``failed`` run that keeps its last checkpoint, and, in a
sweep, a row ``out of memory`` before the next point. The tests raise PyTorch's own
``torch.OutOfMemoryError`` (what CUDA raises; a CPU build constructs it too) inside the loop's
real forward, backward, optimizer step and evaluation, so the path is the one a GPU takes."""

import itertools
import re
from pathlib import Path

import pytest
import torch

from lmlab import loss
from lmlab.compute import estimate
from lmlab.config import load_config
from lmlab.device import free_memory, is_out_of_memory
from lmlab.errors import OutOfMemory
from lmlab.experiments.planning import plan
from lmlab.experiments.runner import run_sweep
from lmlab.nn import TransformerLM
from lmlab.training import loop
from lmlab.training.loop import train
from lmlab.training.outcome import out_of_memory
from lmlab.training.rundir import RunDir
from tests.helpers.lmlab_cli import cli
from tests.helpers.tiny_runs import PRESET, STEPS_ONLY, tiny_run, tiny_sweep

STEPS = [*STEPS_ONLY, "train.max_steps=12", "optim.cosine_cycle_iters=12",
         "train.ckpt_interval=5", "train.eval_interval=10"]
"""A checkpoint at step 5, the first evaluation at step 10."""
MESSAGE = re.compile(r"out of GPU memory at batch 8, context 16 \(about ([\d.]+) GB needed, "
                     r"free memory not known on cpu\): lower train\.batch_size, raise "
                     r"train\.grad_accum, or set train\.batch_size=auto")
"""The line on a CPU, where lmlab knows no free memory (the batch and context of tiny_run)."""


def _oom() -> torch.OutOfMemoryError:
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a "
                                  "total capacity of 8.00 GiB of which 1.2 GiB is free.")


class _FailingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        return logits.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        raise _oom()


def _fail_at(monkeypatch, where: str, call: int, checkpoint: Path) -> dict[str, bytes]:
    """Raise the out-of-memory error on the ``call``-th forward, backward, optimizer step or
    evaluation of the run; returns where the checkpoint's bytes at that moment are put."""
    count, seen = itertools.count(1), {}

    def failing(real):
        def wrapper(*args, **kwargs):
            if next(count) == call:
                seen["checkpoint"] = checkpoint.read_bytes()
                raise _oom()
            return real(*args, **kwargs)
        return wrapper

    if where == "forward":
        monkeypatch.setattr(TransformerLM, "forward", failing(TransformerLM.forward))
    elif where == "optimizer step":
        def build_optimizer(*args, **kwargs):
            optimizer = real_build(*args, **kwargs)
            optimizer.step = failing(optimizer.step)
            return optimizer
        real_build = loop.build_optimizer
        monkeypatch.setattr(loop, "build_optimizer", build_optimizer)
    elif where == "evaluation":
        monkeypatch.setattr(loop, "evaluate", failing(loop.evaluate))
    else:
        def cross_entropy(logits, targets):
            if next(count) == call:
                seen["checkpoint"] = checkpoint.read_bytes()
                logits = _FailingBackward.apply(logits)
            return loss.cross_entropy(logits, targets)
        monkeypatch.setattr(loop, "cross_entropy", cross_entropy)
    return seen


def _checks_needed_memory(line: str, config) -> None:
    """The figure is what `lmlab estimate` says the config needs (two significant digits)."""
    match = MESSAGE.fullmatch(line)
    assert match, line
    assert float(match[1]) == pytest.approx(estimate(config).memory_bytes / 1e9, rel=0.05)


@pytest.mark.slow
@pytest.mark.parametrize(("where", "call"), [("forward", 7), ("backward", 7),
                                             ("optimizer step", 7), ("evaluation", 1)])
def test_out_of_memory_fails_the_run_and_keeps_its_checkpoint(tmp_path: Path, monkeypatch,
                                                              where: str, call: int) -> None:
    config = load_config(PRESET, tiny_run(tmp_path, *STEPS))
    run = RunDir(config.run_dir)
    seen = _fail_at(monkeypatch, where, call, run.checkpoint)
    with pytest.raises(OutOfMemory) as raised:
        train(config)
    _checks_needed_memory(str(raised.value), config)
    assert (run.status, run.reason) == ("failed", str(raised.value))
    assert run.checkpoint.read_bytes() == seen["checkpoint"]  # as it was, not rewritten
    assert torch.load(run.checkpoint, weights_only=True)["iteration"] == 5
    assert not list(run.root.rglob("*.tmp"))


@pytest.mark.slow
def test_lmlab_train_prints_one_line_and_the_run_resumes_with_a_smaller_batch(
        tmp_path: Path, monkeypatch, capsys) -> None:
    words = tiny_run(tmp_path, *STEPS)
    run = RunDir(tmp_path / "runs" / "run")
    _fail_at(monkeypatch, "forward", 7, run.checkpoint)
    code, out, err = cli(capsys, "train", PRESET, *words, "--no-progress")
    monkeypatch.undo()
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in out + err
    _checks_needed_memory(err.strip().removeprefix("error: "), load_config(PRESET, words))
    assert run.status == "failed" and torch.load(run.checkpoint)["iteration"] == 5
    # what the line advises works from the kept checkpoint: the same global batch in two halves
    code, out, err = cli(capsys, "train", PRESET, *words, "train.batch_size=4",
                         "train.grad_accum=2", "--resume", "--no-progress")
    assert code == 0 and "finished" in out and run.status == "finished", err


def test_the_message_on_a_gpu_says_what_is_free(tmp_path: Path, monkeypatch) -> None:
    """On CUDA the free memory is the card's free memory plus what PyTorch's allocator holds in
    reserve for this process (its own blocks, reused first)."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (6.0e9, 8.0e9))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 1.5e9)
    cuda = torch.device("cuda")
    assert free_memory(cuda) == 7.5e9 and free_memory(torch.device("cpu")) is None
    config = load_config(PRESET, tiny_run(tmp_path, "train.batch_size=512"))
    line = out_of_memory(config, cuda)
    assert line.startswith("out of GPU memory at batch 512, context 16 (about ")
    assert line.endswith(" GB needed, 7.5 GB free): lower train.batch_size, raise "
                         "train.grad_accum, or set train.batch_size=auto")


def test_which_errors_are_out_of_memory() -> None:
    assert is_out_of_memory(_oom())
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 9.0 GB, "
                                         "other allocations: 1.0 GB, max allowed: 9.1 GB)"))
    try:  # torch.compile raises its own error from the one that stopped it
        try:
            raise _oom()
        except torch.OutOfMemoryError as exc:
            raise RuntimeError("backend compiler failed") from exc
    except RuntimeError as wrapped:
        assert is_out_of_memory(wrapped)
    assert not is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory"))
    assert not is_out_of_memory(ValueError("out of memory"))


def _out_of_memory_at_batch_8(monkeypatch) -> None:
    real = TransformerLM.forward

    def forward(self, ids, *args, **kwargs):
        if ids.shape[0] == 8:
            raise _oom()
        return real(self, ids, *args, **kwargs)

    monkeypatch.setattr(TransformerLM, "forward", forward)


def _assert_sweep_went_on(rows: list[dict], root: Path) -> None:
    assert [(row["run"], row["status"]) for row in rows] == [
        ("batch_size-8", "out of memory"), ("batch_size-4", "finished")]
    oom = RunDir(root / "batch_size-8")
    assert oom.status == "failed" and MESSAGE.fullmatch(oom.reason)


@pytest.mark.slow
def test_a_sweep_point_out_of_memory_is_a_row_and_the_sweep_goes_on(tmp_path: Path,
                                                                    monkeypatch) -> None:
    _out_of_memory_at_batch_8(monkeypatch)
    sweep = tiny_sweep(tmp_path, "train.max_steps=4", "optim.warmup_iters=1",
                       grid={"train.batch_size": ["8", "4"]})
    events: list[str] = []
    rows = run_sweep(plan(sweep), on_event=events.append)
    _assert_sweep_went_on(rows, tmp_path / "runs" / "s")
    outcome = next(event for event in events if event.startswith("batch_size-8: out of memory"))
    assert MESSAGE.fullmatch(outcome.removeprefix("batch_size-8: out of memory (")[:-1])
    assert events[-1] == "batch_size-4: finished"


@pytest.mark.slow
def test_in_subprocesses_too(tmp_path: Path, monkeypatch) -> None:
    """Each point's process imports a ``sitecustomize`` that makes batch 8 run out of memory."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import torch\nfrom lmlab.nn import TransformerLM\nreal = TransformerLM.forward\n"
        "def forward(self, ids, *args, **kwargs):\n    if ids.shape[0] == 8:\n"
        "        raise torch.OutOfMemoryError('CUDA out of memory.')\n"
        "    return real(self, ids, *args, **kwargs)\nTransformerLM.forward = forward\n")
    src = Path(loop.__file__).parents[2]
    monkeypatch.setenv("PYTHONPATH", f"{inject}:{src}")
    sweep = tiny_sweep(tmp_path, "train.max_steps=4", "optim.warmup_iters=1",
                       grid={"train.batch_size": ["8", "4"]})
    rows = run_sweep(plan(sweep), parallel=2)
    root = tmp_path / "runs" / "s"
    _assert_sweep_went_on(rows, root)
    log = (root / "batch_size-8" / "train.log").read_text().strip().splitlines()
    assert MESSAGE.fullmatch(log[-1].removeprefix("error: ")), log
    assert not [line for line in log if "Traceback" in line]
