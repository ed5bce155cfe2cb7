"""What `lmlab.device.deterministic_kernels` costs: the compiled training step with PyTorch's
deterministic mode on (as lmlab trains on a CPU) against the same step with it off.

One process, one model: the step is compiled once for each setting (torch.compile keeps both,
one guarded by the mode), then short blocks of steps alternate between them in ABBA order, so
that a busy machine slows both alike. Printed: each side's best and median tokens/s, and the
median and quartiles of the per-round ratio (on / off; above 1: the deterministic step is
faster).

    python bench/deterministic_kernels.py                       # the tinystories-cpu preset
    python bench/deterministic_kernels.py --rounds 20 train.dtype=float32
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import describe_machine, step_parts  # noqa: E402
from lmlab.config import load_config  # noqa: E402
from lmlab.device import autocast, deterministic_kernels  # noqa: E402
from lmlab.loss import cross_entropy  # noqa: E402
from lmlab.optim import clip_grad_norm  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tinystories-cpu")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("overrides", nargs="*", help="config overrides, section.key=value")
    args = parser.parse_args()
    config = load_config(args.config, ["data.train_path=-", "data.valid_path=-",
                                       *args.overrides])
    parts = step_parts(config)
    device, amp_dtype, optimizer, params = (parts.device, parts.amp_dtype, parts.optimizer,
                                            parts.params)
    forward = torch.compile(parts.model)
    shape = (config.train.batch_size, config.model.context_length)
    inputs, targets = (torch.randint(0, config.model.vocab_size, shape, device=device)
                       for _ in range(2))

    def tokens_per_s(deterministic: bool, steps: int) -> float:
        if deterministic:
            deterministic_kernels(device)
        else:
            torch.use_deterministic_algorithms(False)
        started = time.perf_counter()
        for _ in range(steps):
            with autocast(device, amp_dtype):
                logits = forward(inputs)
            cross_entropy(logits, targets).backward()
            clip_grad_norm(params, config.optim.grad_clip or float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return steps * config.tokens_per_step / (time.perf_counter() - started)

    print(f"{args.config} ({config.tokens_per_step} tokens/step) on {describe_machine(device)}; "
          f"{args.rounds} rounds of {args.steps} steps each way", flush=True)
    for deterministic in (False, True):
        tokens_per_s(deterministic, 3)  # compiles the step for this setting
    on: list[float] = []
    off: list[float] = []
    for i in range(args.rounds):
        for deterministic in ((False, True) if i % 2 == 0 else (True, False)):
            (on if deterministic else off).append(tokens_per_s(deterministic, args.steps))
    ratios = sorted(a / b for a, b in zip(on, off, strict=True))
    quartiles = statistics.quantiles(ratios, n=4)
    print(f"deterministic on:  best {max(on):,.0f} tok/s, median {statistics.median(on):,.0f}")
    print(f"deterministic off: best {max(off):,.0f} tok/s, median {statistics.median(off):,.0f}")
    print(f"on / off per round: median {statistics.median(ratios):.3f} "
          f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}); best on / best off "
          f"{max(on) / max(off):.3f}")


if __name__ == "__main__":
    main()
