"""`lmlab estimate`: what a config's run needs (parameters, FLOPs, memory, the largest batch that
fits, time) before it runs, and on which device it assumes so."""

from enum import StrEnum
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.cli.options import ConfigFile, Overrides
from lmlab.compute import ESTIMATE_GPU, GPUS

GpuName = StrEnum("GpuName", {name: name for name in GPUS})
"""The ``--gpu`` choices: the GPUs of :data:`lmlab.compute.GPUS`."""


@app.command("estimate")
def estimate_command(
    config: ConfigFile,
    overrides: Overrides = None,
    gpu: Annotated[GpuName | None, typer.Option(
        metavar="NAME", help=f"The GPU to estimate for: {', '.join(GPUS)} (quote 'RTX 4060'; "
        f"default: {ESTIMATE_GPU}, or the CPU for a config with train.device=cpu).",
        show_default=False)] = None,
    memory_gb: Annotated[float | None, typer.Option(
        "--memory-gb", min=0.1, help="The device's memory in GB, for a card of another size "
        "or Apple's unified memory (default: the card's, or this machine's on a CPU).",
        show_default=False)] = None,
    mfu: Annotated[float | None, typer.Option(
        min=0.01, max=1.0, help="Model FLOPs utilisation to assume (default: what lmlab "
        "measured for the model nearest in size, stated in the output).",
        show_default=False)] = None,
) -> None:
    """What a run needs, up front: size, memory, largest batch, time.

    Counts are exact, each by its name (CS336's "non-embedding" parameters include the output
    projection, Kaplan et al.'s leave it out); memory is an estimate (fp32 weights, gradients
    and optimizer state; activations at the configured batch), and the largest batch is the
    most that stays below 90% of the device's memory; time is the token budget at an MFU of
    the card's peak. train.batch_size=auto is estimated at the largest batch.

    \b
    Examples:
      lmlab estimate tinystories-17m --gpu 'RTX 4060'
      lmlab estimate tinystories-17m --gpu H100 --mfu 0.3 train.batch_size=128
      lmlab estimate tinystories-17m --gpu 'Apple M-series' --memory-gb 16
    """
    from lmlab.compute import (
        MEMORY_HEADROOM,
        card_precision,
        default_mfu,
        duration,
        estimate,
        largest_batch,
    )
    from lmlab.config import load_config
    from lmlab.errors import ConfigError
    from lmlab.training.batch_probe import largest_divisor, machine_memory, with_batch

    cfg = load_config(config, overrides or [])
    on_cpu = gpu is None and cfg.train.device == "cpu"
    name = None if on_cpu else (gpu.value if gpu is not None else ESTIMATE_GPU)
    card = GPUS[name] if name else {}
    precision = ("float32" if cfg.train.dtype in ("auto", "float32") else "bfloat16"
                 ) if on_cpu else card_precision(cfg.train.dtype, name)
    if memory_gb is not None:
        memory, where = memory_gb * 1e9, f"{memory_gb:g} GB (--memory-gb)"
    elif on_cpu:
        memory, source = machine_memory("cpu")
        where = f"{memory / 1e9:.1f} GB, {source}"
    elif "memory" in card:
        memory, where = card["memory"], f"{card['memory'] / 1e9:.0f} GB"
    else:
        raise ConfigError(f"the {name}'s memory is its unified memory, of any size: give it as "
                          f"--memory-gb (e.g. lmlab estimate {config} --gpu '{name}' "
                          "--memory-gb 16)")
    most = largest_batch(cfg, memory, precision)
    train = cfg.train
    if train.batch_size == "auto":
        cfg = with_batch(cfg, max(most, 1), train.grad_accum)
    elif train.grad_accum == "auto":
        micro = largest_divisor(train.batch_size, max(most, 1))
        cfg = with_batch(cfg, micro, train.batch_size // micro)
    batch = cfg.train.batch_size
    est = estimate(cfg, precision=precision)
    gb = 1e9
    if on_cpu:
        device = f"cpu (train.device=cpu), {where}; --gpu names a card"
    else:
        device = (f"{name}, {where}, {precision}"
                  f"{'' if 'bfloat16' in card or not card else ' (no bfloat16 on this card)'}"
                  f"{'' if gpu is not None else '; the default, --gpu names another'}")
    lines = [
        f"parameters       {est.parameters:,}: {est.counts()}",
        *([f"non-embedding    {est.without_embedding:,} as CS336 counts (all but the input "
           f"embedding),", f"                 {est.block_parameters:,} as Kaplan et al. (the "
           f"blocks alone)"] if est.output_parameters else
          [f"non-embedding    {est.block_parameters:,} (all but the tied embedding: CS336 and "
           f"Kaplan et al. agree)"]),
        f"FLOPs per token  {est.flops_per_token:.3g} (training: forward and backward)",
        f"device           {device}",
        f"memory           {est.memory_bytes / gb:.2f} GB: weights {est.weights_bytes / gb:.2f}, "
        f"gradients {est.gradients_bytes / gb:.2f}, optimizer {est.optimizer_bytes / gb:.2f}, "
        f"activations {est.activations_bytes / gb:.2f} (batch {batch} x "
        f"{cfg.model.context_length} tokens, {cfg.train.grad_accum} a step)",
        (f"largest batch    {most} sequences of {cfg.model.context_length} tokens (below "
         f"{1 - MEMORY_HEADROOM:.0%} of {memory / gb:.3g} GB; "
         f"{estimate(cfg, batch=most + 1, precision=precision).memory_bytes / gb:.2f} GB at "
         f"{most + 1})") if most else
        "largest batch    none: even one sequence needs more than "
        f"{1 - MEMORY_HEADROOM:.0%} of {memory / gb:.3g} GB",
    ]
    if cfg.train.device == "cpu" and not on_cpu:
        lines.append(f"note             the config trains on the CPU (train.device=cpu): this "
                     f"is the run on one {name}")
    peak = cfg.train.peak_flops or card.get(precision)
    if mfu is None:
        mfu, measured = default_mfu(est.parameters, cfg.train.compile)
        why = f"measured by lmlab: {measured}; --mfu sets another"
    else:
        why = "--mfu"
    if peak is None:
        lines.append("time             not estimated: the peak FLOP/s of "
                     f"{'a CPU' if on_cpu else 'the ' + name} is not known (set "
                     f"train.peak_flops{'; lmlab sweep --dry-run measures it' if on_cpu else ''})")
    else:
        rate = peak * mfu / est.flops_per_token
        lines.append(f"speed            {rate:,.0f} tokens/s at {mfu:.0%} MFU of "
                     f"{peak / 1e12:,.1f} TFLOP/s ({why})")
        if est.tokens is not None:
            lines.append(f"time             {duration(est.tokens / rate)} for "
                         f"{est.tokens:,} tokens")
        if cfg.train.time_budget_s is not None:
            lines.append(f"in the budget    {cfg.train.time_budget_s * rate:,.0f} tokens in "
                         f"{cfg.train.time_budget_s:g} s")
    typer.echo("\n".join(lines))
    if est.memory_bytes > (1 - MEMORY_HEADROOM) * memory:
        verdict = "will not fit in" if est.memory_bytes > memory else "leaves under " \
            f"{MEMORY_HEADROOM:.0%} free of"
        typer.echo(f"warning: about {est.memory_bytes / gb:.1f} GB {verdict} the "
                   f"{memory / gb:.3g} GB of {'this machine' if on_cpu else 'one ' + name}: "
                   f"lower train.batch_size to {most} or less (raise train.grad_accum to keep "
                   f"the batch), or set train.batch_size=auto", err=True)
