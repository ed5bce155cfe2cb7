"""`lmlab estimate`: what a config's run needs (parameters, FLOPs, memory, time) before it runs."""

from enum import StrEnum
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.cli.options import ConfigFile, Overrides
from lmlab.compute import ESTIMATE_GPU, ESTIMATE_MFU, GPUS

GpuName = StrEnum("GpuName", {name: name for name in GPUS})
"""The ``--gpu`` choices: the GPUs of :data:`lmlab.compute.GPUS`."""


@app.command("estimate")
def estimate_command(
    config: ConfigFile,
    overrides: Overrides = None,
    gpu: Annotated[GpuName, typer.Option(
        help="The GPU to estimate for (quote 'RTX 4090').")] = GpuName[ESTIMATE_GPU],
    mfu: Annotated[float, typer.Option(
        min=0.01, max=1.0, help="Model FLOPs utilisation to assume (0.3-0.5 is typical for "
        "small models in bf16).")] = ESTIMATE_MFU,
) -> None:
    """The parameters, FLOPs, memory and time of a run, up front.

    Counts are exact, each by its name (CS336's "non-embedding" parameters include the output
    projection, Kaplan et al.'s leave it out); memory is an estimate (fp32 weights, gradients
    and optimizer state; activations at the configured batch); time is the token budget at
    --mfu of the GPU's peak.

    \b
    Examples:
      lmlab estimate tinystories-17m --gpu H100 --mfu 0.4
      lmlab estimate tinystories-17m train.batch_size=128 --gpu L4
    """
    from lmlab.compute import duration, estimate
    from lmlab.config import load_config

    cfg = load_config(config, overrides or [])
    est = estimate(cfg)
    name = gpu.value
    card = GPUS[name]
    bf16 = cfg.train.dtype != "float32"
    peak = card["bfloat16" if bf16 else "float32"]
    gb = 1e9
    lines = [
        f"parameters       {est.parameters:,}: {est.counts()}",
        *([f"non-embedding    {est.without_embedding:,} as CS336 counts (all but the input "
           f"embedding),", f"                 {est.block_parameters:,} as Kaplan et al. (the "
           f"blocks alone)"] if est.output_parameters else
          [f"non-embedding    {est.block_parameters:,} (all but the tied embedding: CS336 and "
           f"Kaplan et al. agree)"]),
        f"FLOPs per token  {est.flops_per_token:.3g} (training: forward and backward)",
        f"memory           {est.memory_bytes / gb:.2f} GB: weights {est.weights_bytes / gb:.2f}, "
        f"gradients {est.gradients_bytes / gb:.2f}, optimizer {est.optimizer_bytes / gb:.2f}, "
        f"activations {est.activations_bytes / gb:.2f} (batch {cfg.train.batch_size})",
    ]
    seconds = est.seconds(peak, mfu)
    if seconds is not None:
        lines.append(f"{'time on ' + name:<16} {duration(seconds)} for {est.tokens:,} tokens at "
                     f"{mfu:.0%} MFU of {peak / 1e12:,.0f} TFLOP/s "
                     f"({'bf16' if bf16 else 'fp32'}): {peak * mfu / est.flops_per_token:,.0f} "
                     f"tokens/s")
    if cfg.train.time_budget_s is not None:
        reachable = cfg.train.time_budget_s * peak * mfu / est.flops_per_token
        lines.append(f"in the budget    {reachable:,.0f} tokens in {cfg.train.time_budget_s:g} s "
                     f"on {name} at {mfu:.0%} MFU")
    typer.echo("\n".join(lines))
    if est.memory_bytes > card["memory"]:
        typer.echo(f"warning: about {est.memory_bytes / gb:.1f} GB will not fit in the "
                   f"{card['memory'] / gb:.0f} GB of one {name}: lower train.batch_size (raise "
                   f"train.grad_accum to keep the batch)", err=True)
