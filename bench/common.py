"""Helpers shared by the benchmarks: a one-line description of the machine."""

import os
import platform

import torch


def describe_machine(device: torch.device) -> str:
    """e.g. ``cpu x86_64, 2 cores, torch 2.13.0`` or ``NVIDIA H200, torch 2.13.0``."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{device.type} {platform.machine()}, {os.cpu_count()} cores"
    return f"{where}, torch {torch.__version__}"
