"""Milliseconds of one Muon step, lmlab vs ``torch.optim.Muon``, in the same process.

The parameters are a model's block matrices (the ones Muon gets in ``lmlab train``), each with
a random gradient; a step is the momentum update, the Newton-Schulz orthogonalisation and the
weight update. ``torch.optim.Muon`` orthogonalises one matrix at a time in bfloat16; lmlab
batches the matrices of one shape and runs them in ``optim.muon_dtype`` (``auto``: bfloat16 on
a CUDA GPU, or a CPU with AMX or AVX-512 BF16, else float32); both precisions are timed
everywhere, and the float32 line shows lmlab's batching alone.
Timed rounds alternate (ABBA); the ratio is the median over rounds of reference ms / lmlab ms
(> 1 means lmlab is faster).

    python bench/muon_step.py                               # the CPU preset's matrices
    python bench/muon_step.py --config tinystories-17m --device cuda
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import describe_machine  # noqa: E402
from lmlab.config import load_config  # noqa: E402
from lmlab.device import resolve_device, resolve_matmul_dtype  # noqa: E402
from lmlab.nn import TransformerLM  # noqa: E402
from lmlab.optim import (
    Muon,  # noqa: E402
    build_optimizer,  # noqa: E402
)

SETTINGS = dict(lr=0.02, momentum=0.95, weight_decay=0.1)


def block_matrices(config_path: str, device: torch.device) -> list[torch.nn.Parameter]:
    """The matrices ``lmlab train`` gives Muon (its ``muon`` group), with a fixed random gradient
    each."""
    torch.manual_seed(0)
    config = load_config(config_path, ["optim.optimizer=muon"])
    optimizer = build_optimizer(TransformerLM(config.model, device=device), config)
    matrices = next(g["params"] for g in optimizer.param_groups if g["algorithm"] == "muon")
    for matrix in matrices:
        matrix.grad = torch.randn_like(matrix)
    return matrices


def time_steps(optimizer: torch.optim.Optimizer, steps: int, device: torch.device) -> float:
    """Milliseconds per step."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000 / steps


def compare(name: str, ours: Muon, reference: torch.optim.Muon, args, device) -> str:
    for optimizer in (ours, reference):  # warm up (and allocate the momentum buffers)
        time_steps(optimizer, 3, device)
    rounds: dict[str, list[float]] = {"lmlab": [], "reference": []}
    for i in range(args.rounds):
        pairs = [("lmlab", ours), ("reference", reference)]
        for key, optimizer in pairs if i % 2 == 0 else pairs[::-1]:
            rounds[key].append(time_steps(optimizer, args.steps, device))
    ratio = statistics.median(theirs / mine for mine, theirs in
                              zip(rounds["lmlab"], rounds["reference"], strict=True))
    return (f"{name:<16} lmlab={statistics.median(rounds['lmlab']):7.2f} ms  "
            f"torch.optim.Muon={statistics.median(rounds['reference']):7.2f} ms  "
            f"ratio={ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tinystories-cpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    args = parser.parse_args()
    device = resolve_device(args.device)
    matrices = block_matrices(args.config, device)
    shapes = sorted({tuple(m.shape) for m in matrices})
    print(f"machine: {describe_machine(device)}, {torch.get_num_threads()} threads")
    print(f"{args.config}: {len(matrices)} block matrices of shapes {shapes}")
    auto = resolve_matmul_dtype("auto", device)
    reference = torch.optim.Muon(matrices, **SETTINGS)
    for dtype in dict.fromkeys([auto, torch.bfloat16, torch.float32]):
        ours = Muon([{"params": matrices}], ns_dtype=dtype, **SETTINGS)
        label = f"{str(dtype).removeprefix('torch.')}{' (auto)' if dtype == auto else ''}"
        print(compare(label, ours, reference, args, device))


if __name__ == "__main__":
    main()
