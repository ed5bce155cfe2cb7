"""Tiny runs for tests: token files written like `lmlab tokenize` writes them (ids + sidecar),
the override words of a run that takes a step in milliseconds on a CPU, a sweep of such runs, and
the losses a run logged."""

import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lmlab.atomic import atomic_write_json
from lmlab.experiments.sweep import Sweep
from lmlab.tokens import TokenFileInfo, sidecar_path, token_dtype
from lmlab.training.rundir import RunDir
from tests.helpers.paths import PRESETS


def write_tokens(path: Path, ids, vocab_size: int, source_bytes: int | None = None,
                 tokenizer_hash: str = "test", source_path: str | None = None) -> Path:
    """Write ``ids`` to ``path`` with a sidecar (``source_bytes`` defaults to 4 per token;
    ``tokenizer_hash`` stands for the fingerprint of the tokenizer that wrote them;
    ``source_path``, the text they came from, defaults to ``path``)."""
    ids = np.asarray(ids)
    dtype = token_dtype(vocab_size)
    ids.astype(dtype).tofile(path)
    info = TokenFileInfo(dtype=dtype.name, count=len(ids), vocab_size=vocab_size,
                         tokenizer_hash=tokenizer_hash, special_tokens={},
                         source_path=source_path or str(path),
                         source_bytes=source_bytes if source_bytes is not None else 4 * len(ids))
    atomic_write_json(sidecar_path(path), asdict(info))
    return path


def pattern_tokens(n: int, vocab_size: int, seed: int = 0) -> np.ndarray:
    """A learnable stream: eight fixed random phrases in an order drawn from ``seed``, so a tiny
    model's loss falls fast, on held-out streams (another seed) too."""
    fixed = np.random.default_rng(1234)
    phrases = [fixed.integers(0, vocab_size, size=fixed.integers(3, 8)) for _ in range(8)]
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n:
        out.extend(phrases[rng.integers(len(phrases))])
    return np.array(out[:n])


VOCAB = 64
CONTEXT = 16
PRESET = PRESETS / "tinystories-cpu.toml"
STEPS_ONLY = ["train.time_budget_s=none", "train.schedule_over_time=false"]
"""With ``PRESET``: the run's length in steps alone (the preset's time budget off)."""


def tiny_run(tmp_path: Path, *overrides: str, train_tokens: int = 20_000,
             valid_tokens: int = 1_000) -> list[str]:
    """Write a learnable tiny dataset under ``tmp_path`` and return the override words of a
    run small enough to take a step in a few milliseconds on a CPU."""
    train = tmp_path / "train.bin"
    valid = tmp_path / "valid.bin"
    if not train.exists():
        write_tokens(train, pattern_tokens(train_tokens, VOCAB), VOCAB)
        write_tokens(valid, pattern_tokens(valid_tokens, VOCAB, seed=1), VOCAB)
    return [
        f"data.train_path={train}", f"data.valid_path={valid}", "run.name=run",
        f"run.runs_dir={tmp_path / 'runs'}",
        f"model.vocab_size={VOCAB}", f"model.context_length={CONTEXT}", "model.d_model=32",
        "model.num_layers=2", "model.num_heads=2", "train.batch_size=8", "train.max_steps=30",
        "train.log_interval=1", "train.eval_interval=10", "train.ckpt_interval=10",
        "train.device=cpu", "optim.warmup_iters=3", "optim.lr_max=1e-2", "optim.lr_min=1e-3",
        "train.compile=false",  # the CPU preset compiles: ~20 s of a test's few steps
        *overrides,
    ]


def tiny_sweep(tmp_path: Path, *overrides: str, **options) -> Sweep:
    """A sweep of the tiny test runs (30 steps of a 2-layer, 32-wide model)."""
    words = [*tiny_run(tmp_path), *STEPS_ONLY, *overrides]
    return Sweep(config=PRESET, name="s", overrides=words, **options)


def losses(run: Path) -> dict[int, float]:
    """The train loss the run at ``run`` logged, by step."""
    return {r["step"]: r["train/loss"] for r in RunDir(run).read_metrics() if "train/loss" in r}


def wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """Wait (``timeout_s`` at most: a compiled run compiles first) until the training process
    ``proc`` has logged ``step`` in ``run``."""
    deadline = time.monotonic() + timeout_s
    while max(losses(run), default=0) < step:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
