"""Overhead of the whole `lmlab train` loop over the bare training step, same config, same run.

The loop adds what a real run needs around each step: sampling a batch from the memory-mapped
token file, setting the learning rate, the loss bookkeeping, logging to metrics.jsonl and the
progress bar. The bare step is forward + cross-entropy + backward + clipping + AdamW on batches
already in memory. Periodic evaluation and checkpoints are off (they are not part of a step), and
the first ``--warmup`` steps of each are not timed. Rounds alternate between the two in ABBA
order, so a busy machine slows both alike, and the best round of each counts (as in ``timeit``: a
busy machine only ever slows a round down); the overhead is 1 - loop tokens/s / bare tokens/s
(target <= 3%).

    python bench/trainer_overhead.py                          # the tinystories-cpu preset
    python bench/trainer_overhead.py --config tinystories-17m --steps 50
"""

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import describe_machine, step_parts  # noqa: E402
from lmlab.config import Config, config_from_dict, load_config  # noqa: E402
from lmlab.device import autocast, compiled, resolve_device  # noqa: E402
from lmlab.loss import cross_entropy  # noqa: E402
from lmlab.optim import (  # noqa: E402
    clip_grad_norm,  # noqa: E402
    learning_rate,
    set_learning_rate,
)
from lmlab.tokens import load_tokens
from lmlab.training.batches import RandomBatches  # noqa: E402
from lmlab.training.loop import train  # noqa: E402
from lmlab.training.rundir import RunDir  # noqa: E402
from tests.helpers.tiny_runs import write_tokens  # noqa: E402


def bare_tokens_per_s(config: Config, warmup: int, steps: int) -> float:
    """Tokens/s of the training step alone, on random batches already on the device (compiled
    when the config compiles, as the loop is; the warmup steps take the compiling)."""
    parts = step_parts(config)
    device, amp_dtype, optimizer, params = (parts.device, parts.amp_dtype, parts.optimizer,
                                            parts.params)
    forward = compiled(parts.model, device, print) if config.train.compile else parts.model
    shape = (config.train.batch_size, config.model.context_length)
    batches = [(torch.randint(0, config.model.vocab_size, shape, device=device),
                torch.randint(0, config.model.vocab_size, shape, device=device))
               for _ in range(config.train.grad_accum)]
    for step in range(warmup + steps):
        if step == warmup:
            _sync(device)
            started = time.perf_counter()
        set_learning_rate(optimizer, learning_rate(config, step, 0.0))
        for inputs, targets in batches:
            with autocast(device, amp_dtype):
                logits = forward(inputs)
            (cross_entropy(logits, targets) / config.train.grad_accum).backward()
        clip_grad_norm(params, config.optim.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return steps * config.tokens_per_step / (time.perf_counter() - started)


def loop_tokens_per_s(config: Config, warmup: int, steps: int, runs_dir: Path) -> float:
    """Tokens/s of `lmlab train` between its log records at step ``warmup`` and the last step."""
    raw = config.model_dump(mode="json")
    raw["train"] |= dict(max_steps=warmup + steps, max_tokens=None, time_budget_s=None,
                         schedule_over_time=False, eval_interval=0, ckpt_interval=0,
                         eval_batches=1)  # the final evaluation is not timed: keep it short
    raw["run"] |= dict(runs_dir=str(runs_dir), resume="never")
    # a short timed run refuses a warmup as long as itself; the rate does not change the speed
    raw["optim"]["warmup_iters"] = min(raw["optim"]["warmup_iters"], (warmup + steps) // 2)
    config = config_from_dict(raw)
    with contextlib.redirect_stderr(io.StringIO()):  # draw the progress bar, but not here
        result = train(config, show_progress=True)
    if result.status != "finished":
        raise RuntimeError(f"the timed run ended {result.status} at step {result.step}")
    logged = {r["step"]: r for r in RunDir(result.run_dir).read_metrics() if "train/loss" in r}
    first, last = logged[warmup], logged[warmup + steps]
    return (last["tokens"] - first["tokens"]) / (last["wall_time_s"] - first["wall_time_s"])


def sampling_seconds(config: Config, calls: int = 200) -> float:
    """Seconds per step to draw the step's batches from the memory-mapped training file: the
    part of the loop's overhead that grows with the batch, timed alone (no contention with a
    step)."""
    device = resolve_device(config.train.device)
    data = load_tokens(config.data.train_path, vocab_size=config.model.vocab_size,
                       context_length=config.model.context_length)
    sampler = RandomBatches(data.tokens, config.train.batch_size, config.model.context_length,
                            device, seed=0, grad_accum=config.train.grad_accum)
    started = time.perf_counter()
    for _ in range(calls):
        sampler.next_step()
    _sync(device)
    return (time.perf_counter() - started) / calls


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tinystories-cpu")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="config overrides, section.key=value")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = load_config(args.config, args.overrides)
        if not Path(base.data.train_path).exists():  # throughput does not depend on the text
            rng = np.random.default_rng(0)
            tokens = rng.integers(0, base.model.vocab_size, size=500_000)
            fake = write_tokens(Path(tmp) / "tokens.bin", tokens, base.model.vocab_size)
            base = load_config(args.config, [*args.overrides, f"data.train_path={fake}",
                                             f"data.valid_path={fake}"])
        if args.steps % base.train.log_interval or args.warmup % base.train.log_interval:
            parser.error(f"--steps and --warmup must be multiples of train.log_interval "
                         f"({base.train.log_interval})")
        device = resolve_device(base.train.device)
        print(f"{args.config} ({base.tokens_per_step} tokens/step) on "
              f"{describe_machine(device)}; {args.rounds} rounds of {args.steps} steps",
              flush=True)
        bare, loop = [], []
        for i in range(args.rounds):  # ABBA order: a load that drifts favours neither
            if i % 2:
                loop.append(loop_tokens_per_s(base, args.warmup, args.steps, Path(tmp) / f"r{i}"))
            bare.append(bare_tokens_per_s(base, args.warmup, args.steps))
            if not i % 2:
                loop.append(loop_tokens_per_s(base, args.warmup, args.steps, Path(tmp) / f"r{i}"))
            print(f"  round {i + 1}: bare step {bare[-1]:,.0f} tok/s, "
                  f"lmlab train loop {loop[-1]:,.0f} tok/s", flush=True)
        sampling = sampling_seconds(base)
    print(f"best: bare {max(bare):,.0f} tok/s, loop {max(loop):,.0f} tok/s, "
          f"overhead {1 - max(loop) / max(bare):+.1%} "
          f"(medians {statistics.median(bare):,.0f} / {statistics.median(loop):,.0f})")
    step_s = base.tokens_per_step / max(bare)
    print(f"batch sampling alone: {sampling * 1e6:,.0f} us per step, "
          f"{sampling / step_s:.3%} of a bare step")


if __name__ == "__main__":
    main()
