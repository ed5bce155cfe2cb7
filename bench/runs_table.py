"""Time of `lmlab runs` on a folder of many runs: the table alone (``list_runs``, in process) and
the whole command (a fresh process: Python, torch and lmlab imported, the table printed), with
the import alone (a fresh process that imports the table's module and stops) as the reference:
what the command costs besides starting.

The folder is built from one real run: a tiny model trained here for ``--steps`` steps on a
repeated phrase of random tokens (a metrics line every step, an evaluation every 20), whose
files are copied ``--runs`` times as the points of an lr sweep with 5 seeds each (each copy's
config names its own rate and seed, so the table folds them into points as it would a real
sweep). The best of ``--rounds`` rounds counts (a busy machine only ever slows a round down).

    python bench/runs_table.py                    # 500 runs
    python bench/runs_table.py --runs 100 --steps 600
"""

import argparse
import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmlab.atomic import atomic_write_json  # noqa: E402
from lmlab.config import load_config  # noqa: E402
from lmlab.experiments.runs_table import list_runs  # noqa: E402
from lmlab.tokens import TokenFileInfo, sidecar_path  # noqa: E402
from lmlab.training.loop import train  # noqa: E402

SEEDS = 5


def token_file(path: Path, count: int, vocab_size: int = 256) -> Path:
    """A learnable stream (one random phrase of 97 ids, repeated) with the sidecar that
    `lmlab tokenizer encode` writes."""
    phrase = np.random.default_rng(0).integers(0, vocab_size, 97)
    np.resize(phrase, count).astype(np.uint16).tofile(path)
    info = TokenFileInfo(dtype="uint16", count=count, vocab_size=vocab_size,
                         tokenizer_hash="bench", special_tokens={}, source_path=str(path),
                         source_bytes=count)
    atomic_write_json(sidecar_path(path), asdict(info))
    return path


def real_run(folder: Path, steps: int) -> Path:
    """One tiny run trained for ``steps`` steps, logging every step."""
    config = load_config("tinystories-cpu", [
        f"data.train_path={token_file(folder / 'train.bin', 50_000)}",
        f"data.valid_path={token_file(folder / 'valid.bin', 2_000)}",
        f"run.runs_dir={folder}", "run.name=real", "model.vocab_size=256",
        "model.context_length=16", "model.d_model=32", "model.num_layers=1", "model.num_heads=2",
        "train.batch_size=4", f"train.max_steps={steps}", "train.time_budget_s=none",
        "train.schedule_over_time=false", "train.log_interval=1", "train.eval_interval=20",
        "train.ckpt_interval=0", "train.compile=false", "optim.warmup_iters=5"])
    with contextlib.redirect_stderr(io.StringIO()):
        return train(config).run_dir


def copies(run: Path, root: Path, count: int) -> None:
    """``count`` copies of ``run``'s files under ``root``, as an lr sweep's points and seeds."""
    config = json.loads((run / "config.json").read_text())
    for i in range(count):
        rate, seed = 1e-4 * (1 + i // SEEDS), i % SEEDS
        name = f"lr_max-{rate:.4g}__seed-{seed}"
        folder = root / name
        folder.mkdir(parents=True)
        for file in ("metrics.jsonl", "status", "env.json"):
            shutil.copy2(run / file, folder / file)
        config["optim"]["lr_max"], config["train"]["seed"] = rate, seed
        config["run"].update(name=name, runs_dir=str(root))
        (folder / "config.json").write_text(json.dumps(config))


def best_of(rounds: int, work) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--steps", type=int, default=300, help="steps of the real run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = real_run(folder, args.steps)
        root = folder / "sweep"
        copies(run, root, args.runs)
        lines = len((run / "metrics.jsonl").read_text().splitlines())
        status = (run / "status").read_text().split()[0]
        print(f"{args.runs} runs, each a {status} run's metrics.jsonl of {lines} lines")
        table = best_of(args.rounds, lambda: list_runs(root))
        print(f"the table (list_runs, in process): {table:.2f} s "
              f"({len(list_runs(root).rows)} rows, seeds folded)")
        command = [sys.executable, "-m", "lmlab", "runs", str(root)]
        whole = best_of(args.rounds, lambda: subprocess.run(command, check=True,
                                                            capture_output=True))
        start = [sys.executable, "-c", "import lmlab.experiments.runs_table"]
        imports = best_of(args.rounds, lambda: subprocess.run(start, check=True))
        print(f"the whole command (lmlab runs, a fresh process): {whole:.2f} s, of which "
              f"{imports:.2f} s the import alone (a fresh process, nothing read)")


if __name__ == "__main__":
    main()
