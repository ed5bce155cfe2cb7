"""Helpers shared by the benchmarks: a one-line description of the machine, and the parts of
a bare training step built as the trainer builds them."""

import os
import platform
from dataclasses import dataclass

import torch

from lmlab.config import Config
from lmlab.device import resolve_device, resolve_dtype
from lmlab.nn import TransformerLM
from lmlab.optim import build_optimizer


@dataclass
class StepParts:
    """A config's device, autocast dtype, seeded model, optimizer and its parameters."""

    device: torch.device
    amp_dtype: torch.dtype | None
    model: TransformerLM
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]


def step_parts(config: Config) -> StepParts:
    """What a bare training step of ``config`` needs, seeded from ``train.seed`` like a run."""
    device = resolve_device(config.train.device)
    torch.manual_seed(config.train.seed)
    model = TransformerLM(config.model, device=device)
    optimizer = build_optimizer(model, config)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return StepParts(device, resolve_dtype(config.train.dtype, device), model, optimizer, params)


def describe_machine(device: torch.device) -> str:
    """e.g. ``cpu x86_64, 2 cores, torch 2.13.0`` or ``NVIDIA H200, torch 2.13.0``."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{device.type} {platform.machine()}, {os.cpu_count()} cores"
    return f"{where}, torch {torch.__version__}"
