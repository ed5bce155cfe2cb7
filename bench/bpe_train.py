"""Benchmark: lmlab ``train_bpe`` against HuggingFace ``tokenizers``' BpeTrainer, in one run.

Both train a byte-level BPE with the same vocabulary size and ``<|endoftext|>`` on the same files:
TinyStories train, and 20x concatenations of TinyStories and OWT train built in a temp folder.
Every measurement is a fresh process (so its peak memory is its own), and lmlab and HF alternate,
so load from other work on the machine hits both alike. Reports the best time of ``--repeats``,
the peak RSS of the process tree, and the ratio lmlab / HF.

    python bench/bpe_train.py [--vocab-size 10000] [--repeats 3] [--workers N]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.tokenizer_common import (  # noqa: E402
    DATA,
    SAMPLES,
    concatenated,
    describe_machine,
    label,
    run_child,
)

SPECIAL = "<|endoftext|>"


def train_lmlab(path: str, vocab_size: int, workers: int) -> None:
    from lmlab.tokenizer import train_bpe

    train_bpe(path, vocab_size, [SPECIAL], num_workers=workers, progress=False)


def train_hf(path: str, vocab_size: int, workers: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train([path], trainer)


TRAINERS = {"lmlab": train_lmlab, "hf": train_hf}


def child(name: str, path: str, vocab_size: int, workers: int) -> None:
    """Time one training run in this process and print it as JSON."""
    start = time.perf_counter()
    TRAINERS[name](path, vocab_size, workers)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab-size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--child", choices=list(TRAINERS), help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file, args.vocab_size, args.workers)
        return

    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    print(f"# BPE training, vocab {args.vocab_size}, {SPECIAL}; {describe_machine()}")
    print(f"# lmlab workers: {args.workers}; best of {args.repeats}, alternating")
    print(f"{'file':<22}{'MB':>6}{'lmlab s':>9}{'HF s':>8}{'ratio':>7}{'lmlab MB':>10}{'HF MB':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        files = [SAMPLES[0], *(concatenated(src, 20, Path(tmp)) for src in SAMPLES)]
        for path in files:
            best = {name: (float("inf"), 0) for name in TRAINERS}
            for _ in range(args.repeats):
                for name in TRAINERS:
                    cmd = [__file__, "--child", name, "--file", str(path)]
                    cmd += ["--vocab-size", str(args.vocab_size), "--workers", str(args.workers)]
                    result, _, peak = run_child(cmd)
                    seconds = min(best[name][0], result["seconds"])
                    best[name] = (seconds, max(best[name][1], peak))
            (ours, our_mem), (ref, ref_mem) = best["lmlab"], best["hf"]
            print(
                f"{label(path):<22}{path.stat().st_size / 1e6:>6.1f}{ours:>9.2f}{ref:>8.2f}"
                f"{ours / ref:>7.2f}{our_mem / 1e6:>10.0f}{ref_mem / 1e6:>7.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
