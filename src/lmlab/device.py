"""Choosing the device and the autocast precision once, from the config."""

from contextlib import AbstractContextManager, nullcontext

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu; anything else is taken as given (``cpu``, ``cuda:1``)."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.dtype`` on ``device``, or None for plain float32.

    ``auto`` means bfloat16 on a CUDA GPU that supports it (Ampere and later), float32 elsewhere:
    CPUs gain little from bfloat16 matmuls and lose precision.
    """
    if name == "auto":
        use_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if use_bf16 else None
    return torch.bfloat16 if name == "bfloat16" else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Mixed-precision context for the forward pass (a no-op for float32)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
