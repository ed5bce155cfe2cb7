"""Choosing the device and the autocast precision once, from the config; what a device's memory
holds (:func:`free_memory`) and whether an error is the device running out of it."""

import shutil
from collections.abc import Callable
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


def flush_denormals(device: torch.device) -> None:
    """On a CPU, compute float32 values below ~1e-38 as zero (process-wide).

    Why: as training goes on, attention probabilities and gradients far below 1e-38 appear, and x86
    CPUs compute such subnormal floats many times slower; flushing them to zero speeds up the
    late steps and leaves the losses the same (measured: docs/benchmarks.md, "Subnormal floats
    on a CPU"). GPUs flush subnormals in their fast paths already, so nothing changes there.
    """
    if device.type == "cpu":
        torch.set_flush_denormal(True)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.dtype`` on ``device``, or None for plain float32.

    ``auto`` means bfloat16 on a CUDA GPU that has it natively (Ampere and later), float16 on
    one without it (T4, V100, RTX 20xx: the loop scales the loss, :mod:`lmlab.training.precision`),
    float32 elsewhere, so that a CPU run computes what the tests and references compute.
    ``native`` adds the CPUs whose bfloat16 matmuls are native (AMX or AVX-512 BF16, as for Muon):
    an opt-in for a race against the clock, since a CPU without them emulates bfloat16 many times
    slower. ``float16`` is float16 on any device.
    """
    if name == "float16":
        return torch.float16
    if name == "auto" and device.type != "cuda":
        return None
    if name in ("auto", "native"):
        if _bf16_is_native(device):
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else None
    return torch.bfloat16 if name == "bfloat16" else None


def _bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matmuls in hardware: a CUDA GPU that has them (not
    one that merely emulates them, as PyTorch's default test counts), or a CPU with AMX or
    AVX-512 BF16. PyTorch has no public test for the CPU's, so its private probes are asked, and
    a torch without them counts as no."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from (``torch.compile`` wraps what fails while
    it compiles), is a device running out of memory: CUDA's ``torch.OutOfMemoryError``, or the
    ``RuntimeError`` that the MPS backend raises.

    >>> is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory")), is_out_of_memory(
    ...     RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"))
    (True, True)
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, torch.OutOfMemoryError) or (
                isinstance(cause, RuntimeError) and "MPS backend out of memory" in str(cause)):
            return True
        cause = cause.__cause__
    return False


def free_memory(device: torch.device) -> float | None:
    """The bytes of ``device`` this process can have for a run: on CUDA the card's free memory
    plus what PyTorch's allocator holds in reserve (freed tensors' blocks, reused first); on MPS
    the working set Metal recommends for the process; None on a CPU (not a GPU's memory)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device)
    if device.type == "mps":
        return torch.mps.recommended_max_memory()
    return None


def resolve_matmul_dtype(name: str, device: torch.device) -> torch.dtype:
    """The dtype for ``optim.muon_dtype`` on ``device``: ``auto`` is bfloat16 only where bfloat16
    matmuls run natively: a CUDA GPU that has them, or a CPU with AMX or AVX-512 BF16.

    Why: Muon's Newton-Schulz iteration needs no more than bfloat16 (its reference runs in it),
    and where bfloat16 matmuls are native it is the faster path; without bfloat16 instructions
    it is emulated and slower than float32 (measured: docs/benchmarks.md, "Optimizer: one Muon
    step").
    """
    if name != "auto":
        return torch.bfloat16 if name == "bfloat16" else torch.float32
    return torch.bfloat16 if _bf16_is_native(device) else torch.float32


def missing_compiler(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot build kernels for ``device`` here, or None when it can.

    On a CPU inductor compiles C++ with the compiler named by ``$CXX`` (``g++``, or ``clang++`` on
    macOS), which slim images (``python:3.12-slim``) lack: without this check the first step would
    fail deep inside inductor. GPUs compile through Triton, which their PyTorch wheels bring.
    """
    if device.type != "cpu":
        return None
    from torch._inductor import config as inductor  # imported by torch.compile anyway

    names = [name for name in inductor.cpp.cxx if name]
    if any(shutil.which(name) for name in names):
        return None
    return f"no C++ compiler ({', '.join(names)}) on PATH, which torch.compile needs on a CPU"


def deterministic_kernels(device: torch.device) -> None:
    """On a CPU, make the kernels ``torch.compile`` builds sum in the same order in every run
    (process-wide, like :func:`flush_denormals`), so that a resumed run, or a second run of one
    seed, logs the same losses to the last digit.

    Why: inductor accumulates the embedding's gradient (one row per token of the batch) with
    atomic adds from all threads, so a repeated token's terms are summed in whatever order the
    threads reach them, and compiled runs drift apart within a few steps. PyTorch's
    deterministic mode makes inductor call the eager ``index_put_`` there, which sums in order
    on a CPU, at no measured cost (docs/benchmarks.md, "Deterministic compiled kernels on a
    CPU"). Its other part, filling new tensors with NaN to expose reads of unwritten memory, is
    left off. ``warn_only``: an op without a deterministic kernel warns instead of stopping the
    run. A mode the user set, and a GPU, are left as they are (a GPU's mode needs
    ``CUBLAS_WORKSPACE_CONFIG`` before CUDA starts; what holds there: docs/training.md, "Resume").
    """
    if device.type != "cpu" or torch.are_deterministic_algorithms_enabled():
        return
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]


def compiled(model: torch.nn.Module, device: torch.device,
             say: Callable[[str], None]) -> torch.nn.Module:
    """``model`` under ``torch.compile`` with :func:`deterministic_kernels`, or as it is after
    one warning through ``say`` where ``device`` cannot compile here (a preset that asks for it
    should still run on a machine without a C++ compiler).

    Dynamo's caches are cleared first, so a run compiles as in a fresh process: runs earlier in
    the same process (a sweep's points, tests) would otherwise use up its recompile limit for
    the model's code, and this run would train uncompiled, silently, with other numerics."""
    missing = missing_compiler(device)
    if missing is None:
        deterministic_kernels(device)
        torch._dynamo.reset()
        return torch.compile(model)
    say(f"warning: train.compile=true, but {missing}: training without it")
    return model


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Mixed-precision context for the forward pass (a no-op for float32)."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)
