"""The batch probe on a CUDA GPU (bench/gpu_check.sh): ``train.batch_size = "auto"`` for the
17M model and the leaderboard model, and the measured peak memory at the chosen batch against
``lmlab estimate``'s, to record in docs/benchmarks.md with the card and the date."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from lmlab.compute import card_precision, estimate, gpu_named, largest_batch  # noqa: E402
from lmlab.config import load_config  # noqa: E402
from lmlab.experiments.sweep import Sweep  # noqa: E402
from lmlab.training.batch_probe import cuda_fits, fit_batch  # noqa: E402

PLACEHOLDER = ["data.train_path=x", "data.valid_path=x", "train.device=cuda",
               "train.compile=false", "train.batch_size=auto"]


def main() -> None:
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    memory = torch.cuda.get_device_properties(device).total_memory
    board = Sweep.from_file("leaderboard")
    configs = {"tinystories-17m": load_config("tinystories-17m", PLACEHOLDER),
               "leaderboard": load_config(board.config, [*board.overrides, *PLACEHOLDER])}
    for label, config in configs.items():
        chosen = fit_batch(config, device, say=lambda line, label=label: print(f"{label}: {line}"))
        batch = chosen.train.batch_size
        gpu = gpu_named(name)
        precision = card_precision(config.train.dtype, gpu) if gpu else "bfloat16"
        fits = cuda_fits(chosen, device)
        fits(batch)  # one step at the chosen batch, its peak measured
        peak = torch.cuda.max_memory_allocated(device)
        est = estimate(chosen, precision=precision).memory_bytes
        print(f"{label}: {name}, probe chose {batch}; the estimate's largest "
              f"{largest_batch(config, memory, precision)}; peak allocated {peak / 1e9:.2f} GB at "
              f"batch {batch}, estimated {est / 1e9:.2f} GB ({est / peak - 1:+.0%})")


if __name__ == "__main__":
    main()
