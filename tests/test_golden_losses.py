"""The losses of one tiny deterministic CPU run, step by step, against a committed golden file.

A regression guard, not a correctness test: the golden values were produced by lmlab's own code
on purpose, and correctness is asserted elsewhere against PyTorch references (the layers, the
loss, AdamW, the schedule, bits per byte). What this test adds is that a change meant to leave the
numbers alone (a refactor of the loop, the model or the optimizer; a new switch that defaults to
off) does leave them alone: 40 steps of a 2-layer, 32-wide model on ``tiny_run``'s learnable
token stream, eager (``train.compile=false``), float32, seed 0, logging every step, through
``lmlab.training.loop.train``; every train loss and the validation loss of every evaluation must
match ``tests/golden/tiny_run_losses.json`` to ``rtol=1e-5, atol=1e-6``.

A change meant to move the numbers (a new initialisation, another order of drawing batches, a
default that changes) regenerates the file, and its diff goes in the same commit::

    LMLAB_REGENERATE_GOLDEN=1 pytest tests/test_golden_losses.py

The test then rewrites the file and passes with a warning that says so.
"""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from lmlab.config import load_config
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from tests.helpers.tiny_runs import tiny_run

GOLDEN = Path(__file__).resolve().parent / "golden" / "tiny_run_losses.json"
REGENERATE = "LMLAB_REGENERATE_GOLDEN"
RTOL, ATOL = 1e-5, 1e-6
WORDS = ["train.max_steps=40", "optim.cosine_cycle_iters=40", "train.log_interval=1",
         "train.eval_interval=10", "train.ckpt_interval=0", "train.seed=0", "train.device=cpu",
         "train.dtype=float32", "train.compile=false", "optim.optimizer=adamw"]
"""Pinned on top of ``tiny_run``'s words, so that a default changing elsewhere cannot move the
run in ways that the golden file does not name."""


def run_losses(tmp_path: Path, *overrides: str) -> dict[str, dict[str, float]]:
    """Train the golden run (with ``overrides`` last) and read its losses back from
    ``metrics.jsonl``: ``{"train/loss": {step: loss}, "val/loss": {step: loss}}``."""
    result = train(load_config(None, [*tiny_run(tmp_path), *WORDS, *overrides]))
    assert result.status == "finished"
    records = RunDir(result.run_dir).read_metrics()
    return {key: {str(r["step"]): r[key] for r in records if key in r}
            for key in ("train/loss", "val/loss")}


def compare(got: dict[str, dict[str, float]], want: dict[str, dict[str, float]]) -> None:
    """Fail with the first step whose loss moved, and how to regenerate on purpose."""
    for key in ("train/loss", "val/loss"):
        assert list(got[key]) == list(want[key]), f"{key} logged at other steps"
        np.testing.assert_allclose(
            list(got[key].values()), list(want[key].values()), rtol=RTOL, atol=ATOL,
            err_msg=f"{key} moved from {GOLDEN.name} (logged at steps {', '.join(got[key])}); "
                    f"if the change is meant to move the numbers, rerun with {REGENERATE}=1")


def test_a_tiny_cpu_run_logs_the_golden_losses(tmp_path: Path) -> None:
    got = run_losses(tmp_path)
    if os.environ.get(REGENERATE) == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        golden = {"how": f"{REGENERATE}=1 pytest tests/test_golden_losses.py",
                  "words": WORDS, "torch": torch.__version__, **got}
        GOLDEN.write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
        warnings.warn(f"{REGENERATE}=1: rewrote {GOLDEN}", stacklevel=1)
        return
    assert GOLDEN.is_file(), f"no {GOLDEN}: write it with {REGENERATE}=1"
    want = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert want["words"] == WORDS, f"the run's words changed: rerun with {REGENERATE}=1"
    compare(got, want)
    assert len(want["train/loss"]) == 40 and len(want["val/loss"]) == 4
