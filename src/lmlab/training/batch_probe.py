"""``train.batch_size = "auto"`` and ``train.grad_accum = "auto"``: the largest micro-batch that
fits in the device's memory, chosen once before a run starts.

On a CUDA GPU the real model is probed: forward, backward and an optimizer step at growing
micro-batches (powers of two, then a bisection between the last that fitted and the first that
did not), each fitting when it runs without running out of memory and its peak stays below
:data:`~lmlab.compute.MEMORY_HEADROOM` of the card. On a CPU or MPS, where running out of memory
is a swapping machine or a killed process rather than an exception, ``lmlab estimate``'s memory
model is held against the machine's memory instead. ``batch_size = "auto"`` keeps
``grad_accum`` (the global batch is what fits times it); ``grad_accum = "auto"`` keeps the step's
``batch_size`` sequences and splits them into as few micro-batches as fit (the same windows: the
sampler draws a step's batch whole, whatever its split). A resume reuses the saved choice.
"""

import gc
import os
from collections.abc import Callable, Mapping
from typing import Any

from lmlab.compute import MEMORY_HEADROOM, largest_batch
from lmlab.config import Config
from lmlab.errors import ConfigError
from lmlab.training.checkpoint import checkpoint_config
from lmlab.training.rundir import RunDir

MAX_AUTO_BATCH = 4096
"""The most sequences ``auto`` tries in one micro-batch."""


def largest_fitting(fits: Callable[[int], bool], limit: int = MAX_AUTO_BATCH) -> int:
    """The largest batch in ``1..limit`` for which ``fits`` holds (0: not even 1), assuming a
    batch fits whenever a larger one does: powers of two until one fails, then a bisection.

    >>> largest_fitting(lambda batch: batch <= 12)
    12
    """
    good, batch = 0, 1
    while batch <= limit and fits(batch):
        good, batch = batch, batch * 2
    bad = min(batch, limit + 1)  # the first that failed, or one past the limit
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(middle) else (good, middle)
    return good


def largest_divisor(step_batch: int, most: int) -> int:
    """The largest micro-batch of at most ``most`` sequences that divides a step's batch evenly
    (``grad_accum = "auto"`` keeps the step's batch whole).

    >>> largest_divisor(512, 100), largest_divisor(96, 40)
    (64, 32)
    """
    return max(size for size in range(1, min(most, step_batch) + 1) if step_batch % size == 0)


def machine_memory(device_type: str) -> tuple[float, str]:
    """The bytes a CPU or MPS run may use, and where that figure comes from: MPS's recommended
    working set, else the memory Linux reports available, else the machine's total."""
    if device_type == "mps":
        import torch

        return float(torch.mps.recommended_max_memory()), "MPS's recommended working set"
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024, "this machine's available memory"
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "this machine's memory"


def cuda_fits(config: Config, device) -> Callable[[int], bool]:
    """Whether one training step of ``config``'s model at a micro-batch runs on the CUDA
    ``device`` with its peak memory below the headroom; the probe's model and optimizer are
    built once (weights, gradients and optimizer state stay, as in training), the activations
    freed between tries."""
    import torch

    from lmlab.random_steps import RandomSteps

    random_steps = RandomSteps(config, device)
    limit = (1 - MEMORY_HEADROOM) * torch.cuda.get_device_properties(device).total_memory

    def fits(batch: int) -> bool:
        random_steps.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            random_steps.step(random_steps.ids(batch))
            torch.cuda.synchronize(device)
            ran = True
        except torch.OutOfMemoryError:
            ran = False  # the frames that held the activations are gone once this returns
        random_steps.optimizer.zero_grad(set_to_none=True)
        return ran and torch.cuda.max_memory_reserved(device) <= limit

    return fits


def estimate_fits(config: Config, memory: float) -> Callable[[int], bool]:
    """Whether ``lmlab estimate``'s memory of a micro-batch stays below the headroom of
    ``memory`` bytes."""
    most = largest_batch(config, memory, "float32")
    return lambda batch: batch <= most


def fit_batch(config: Config, device, world_size: int = 1,
              say: Callable[[str], None] | None = None,
              fits: Callable[[int], bool] | None = None) -> Config:
    """``config`` with ``train.batch_size`` and ``train.grad_accum`` numbers: ``auto`` resolved
    on ``device`` (or by ``fits``, a test's stand-in for the device), or reused from the
    checkpoint a resume continues; the choice said in one line. Unchanged without ``auto``."""
    train = config.train
    if "auto" not in (train.batch_size, train.grad_accum):
        return config
    if train.batch_size == "auto" and train.grad_accum == "auto":
        raise ConfigError("train.batch_size=auto and train.grad_accum=auto together leave the "
                          "global batch open: give one of them a number")
    if world_size > 1:
        raise ConfigError("train.batch_size=auto and train.grad_accum=auto choose on one GPU: "
                          "find the batch with one process (lmlab train CONFIG "
                          "train.max_steps=1), then give it to torchrun as a number")
    run = RunDir(config.run_dir)
    if config.run.resume != "never" and run.checkpoint.is_file():
        saved = with_saved_batch(config, checkpoint_config(run.checkpoint).train.model_dump())
        if saved is not config:
            _say(say, saved, "as the checkpoint's run chose")
            return saved
    if fits is None:
        if device.type == "cuda":
            fits, how = cuda_fits(config, device), (
                f"probed on {device.type}: forward, backward and an optimizer step, eager")
        else:
            memory, where = machine_memory(device.type)
            fits, how = estimate_fits(config, memory), (
                f"lmlab estimate's memory against {where}, {memory / 1e9:.1f} GB (no probe "
                f"on {device.type})")
    else:
        how = "by the given test"
    wanted = train.batch_size if train.grad_accum == "auto" else MAX_AUTO_BATCH
    most = largest_fitting(fits, wanted)
    if most == 0:
        raise ConfigError(f"not even one sequence of {config.model.context_length} tokens fits "
                          f"in memory ({how}): shorten model.context_length or shrink the model")
    if train.grad_accum == "auto":
        micro = largest_divisor(wanted, most)
        resolved = with_batch(config, micro, wanted // micro)
    else:
        resolved = with_batch(config, most, train.grad_accum)
    _say(say, resolved, f"the largest that fits with {MEMORY_HEADROOM:.0%} of the memory kept "
                        f"free ({how})")
    return resolved


def with_saved_batch(config: Config, saved: Mapping[str, Any]) -> Config:
    """``config`` with the batch a run saved (its ``train`` table) in place of ``auto``, when that
    batch is what ``auto`` could have chosen (the same step's batch for ``grad_accum``, the same
    ``grad_accum`` for ``batch_size``); else ``config`` itself. A resume and a sweep's check of an
    existing run both compare through this."""
    train = config.train
    batch, accum = saved.get("batch_size"), saved.get("grad_accum")
    if not isinstance(batch, int) or not isinstance(accum, int):
        return config
    if train.grad_accum == "auto" and train.batch_size == batch * accum:
        return with_batch(config, batch, accum)
    if train.batch_size == "auto" and train.grad_accum == accum:
        return with_batch(config, batch, accum)
    return config


def with_batch(config: Config, batch: int, accum: int) -> Config:
    """``config`` with ``batch`` sequences a micro-batch and ``accum`` of them a step."""
    return config.model_copy(update={"train": config.train.model_copy(
        update={"batch_size": batch, "grad_accum": accum})})


def _say(say: Callable[[str], None] | None, config: Config, how: str) -> None:
    if say is not None:
        train = config.train
        say(f"batch: {train.batch_size} sequences a micro-batch x {train.grad_accum} "
            f"accumulated = {train.batch_size * train.grad_accum} a step, {how}")
