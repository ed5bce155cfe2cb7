"""float16 training (``train.dtype = "float16"``, ``auto`` on a CUDA card without bfloat16):
dynamic loss scaling as ``torch.amp.GradScaler`` documents it. Its defaults: the scale starts at
2**16, halves (``backoff_factor`` 0.5) at a step whose gradients hold an inf or NaN, which is
skipped, and doubles (``growth_factor`` 2) after ``growth_interval`` steps in a row without one.
The expected scales below follow from those rules, and a skipped step is compared with a run
that never took it. Everything runs on the CPU, where PyTorch autocasts to float16 too."""

import functools
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from lmlab import loss
from lmlab.config import load_config
from lmlab.device import resolve_dtype, resolve_matmul_dtype
from lmlab.training import loop
from lmlab.training.loop import train
from lmlab.training.precision import LossScaler
from lmlab.training.rundir import RunDir
from tests.helpers.tiny_runs import tiny_run

INIT_SCALE = 2.0**16
"""GradScaler's documented initial scale."""


class _Overflow(torch.autograd.Function):
    """The identity, whose backward multiplies the gradient by 1e30: in float16 (largest finite
    value 65504) the logits' gradients become inf, as a real overflow makes them."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        return logits.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        assert grad.dtype == torch.float16  # the overflow happens where float16 is computed
        return grad * 1e30


@contextmanager
def _overflow_on(calls: set[int]) -> Iterator[None]:
    """The training loss's backward overflows on these calls of the loss (1: the first
    micro-batch of the run); the loss itself is untouched."""
    count = itertools.count(1)

    def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if next(count) in calls:
            logits = _Overflow.apply(logits)
        return loss.cross_entropy(logits, targets)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "cross_entropy", cross_entropy)
        yield


def _scales(run: Path) -> list[float]:
    return [r["train/loss_scale"] for r in RunDir(run).read_metrics() if "train/loss_scale" in r]


def _checkpoint(run: Path) -> dict:
    return torch.load(RunDir(run).checkpoint, weights_only=True)


def test_auto_is_float16_on_a_cuda_card_without_bfloat16(monkeypatch) -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    # a T4 or V100: PyTorch's default test counts bfloat16 it can only emulate
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)
    assert resolve_dtype("auto", cuda) == resolve_dtype("native", cuda) == torch.float16
    assert resolve_matmul_dtype("auto", cuda) == torch.float32  # Muon: no emulated bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_dtype("auto", cuda) == torch.bfloat16  # an A100 or later
    assert resolve_dtype("float16", cuda) == resolve_dtype("float16", cpu) == torch.float16
    assert resolve_dtype("auto", cpu) is None


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_an_overflowing_step_is_skipped_and_halves_the_scale(tmp_path: Path,
                                                             optimizer: str) -> None:
    common = tiny_run(tmp_path, "train.dtype=float16", f"optim.optimizer={optimizer}",
                      "optim.cosine_cycle_iters=10", "optim.warmup_iters=1",
                      "train.eval_interval=0")
    with _overflow_on({3}):
        skipped = train(load_config(None, [*common, "train.max_steps=3", "run.name=skipped"]))
    before = train(load_config(None, [*common, "train.max_steps=2", "run.name=before"]))
    after, reference = _checkpoint(skipped.run_dir), _checkpoint(before.run_dir)
    # step 3 changed neither the weights nor the optimizer's state (its moments, its step count;
    # only the learning rate its groups hold moved on with the schedule)
    torch.testing.assert_close(after["model"], reference["model"], rtol=0, atol=0)
    torch.testing.assert_close(after["optimizer"]["state"], reference["optimizer"]["state"],
                               rtol=0, atol=0)
    assert _scales(skipped.run_dir) == [INIT_SCALE, INIT_SCALE, INIT_SCALE / 2]
    assert after["scaler"]["scale"] == INIT_SCALE / 2
    assert after["scaler"]["_growth_tracker"] == 0  # the count of good steps starts again
    assert reference["scaler"]["_growth_tracker"] == 2


def test_the_scale_doubles_after_growth_interval_good_steps(tmp_path: Path, monkeypatch) -> None:
    """With two micro-batches a step, the scale is updated once per optimizer step."""
    monkeypatch.setattr(loop, "LossScaler", functools.partial(LossScaler, growth_interval=3))
    with _overflow_on({3}):  # the first micro-batch of step 2
        result = train(load_config(None, tiny_run(tmp_path, "train.dtype=float16",
                                                   "train.grad_accum=2", "train.max_steps=8")))
    assert result.status == "finished"
    #   step:      1        2          3-4: 1, 2 good   5: 3 good, x2   6-7   8: 3 good, x2
    assert _scales(result.run_dir) == [INIT_SCALE, INIT_SCALE / 2, INIT_SCALE / 2, INIT_SCALE / 2,
                                       INIT_SCALE, INIT_SCALE, INIT_SCALE, INIT_SCALE * 2]


@pytest.mark.slow
def test_a_float16_run_resumes_exactly_with_its_scale(tmp_path: Path, monkeypatch) -> None:
    """The README's promise, in float16: N steps straight and N/2 + a resume log the same losses
    and scales. The split falls between two growths (3 good steps of 4 counted), so a resume
    that lost the scale or its count of good steps would differ."""
    monkeypatch.setattr(loop, "LossScaler", functools.partial(LossScaler, growth_interval=4))
    common = tiny_run(tmp_path, "train.dtype=float16", "train.max_steps=12",
                      "optim.cosine_cycle_iters=12", "train.eval_interval=4",
                      "train.ckpt_interval=4")
    with _overflow_on({2}):
        straight = train(load_config(None, [*common, "run.name=straight"]))
    with _overflow_on({2}):
        first = train(load_config(None, [*common, "run.name=split", "train.max_steps=5"]))
    assert first.step == 5 and _checkpoint(first.run_dir)["scaler"]["_growth_tracker"] == 3
    resumed = train(load_config(None, [*common, "run.name=split", "run.resume=must"]))
    assert resumed.status == "finished" and resumed.step == 12

    def measured(run: Path) -> list[dict]:
        timings = ("wall_time_s", "train_time_s", "train/tokens_per_s")
        return [{k: v for k, v in r.items() if k not in timings}
                for r in RunDir(run).read_metrics()
                if not (run == resumed.run_dir and r["step"] == 5 and "val/loss" in r)]

    assert measured(resumed.run_dir) == measured(straight.run_dir)
    assert _scales(straight.run_dir)[5] == INIT_SCALE  # step 6: the growth after the resume
    assert _checkpoint(resumed.run_dir)["scaler"] == _checkpoint(straight.run_dir)["scaler"]


def test_runs_without_float16_log_no_scale(tmp_path: Path) -> None:
    result = train(load_config(None, tiny_run(tmp_path, "train.max_steps=2",
                                                     "optim.warmup_iters=1")))
    assert _scales(result.run_dir) == [] and _checkpoint(result.run_dir)["scaler"] == {}
