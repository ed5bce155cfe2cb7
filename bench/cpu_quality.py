"""Quality per second of the CPU preset: the best model the ``tinystories-cpu`` preset makes in
its time budget, in validation bits per byte.

Runs ``lmlab quickstart`` on the shared TinyStories sample: a BPE tokenizer with the preset's
vocabulary trained on ``train.txt``, both files tokenized, then the preset trained for
``--budget`` seconds of training steps (periodic evaluation and checkpoints do not count) and
evaluated on the whole of ``valid.txt`` at the preset's context length. Prints tokens/s, tokens
seen, the final validation loss and bits per byte, and the target (issue 18: <= 0.98 bits/byte
in 600 s on a 2-core CPU, mean of 3 runs; issue 7's was 1.09; a tuned built-ins baseline reaches
1.150). The run directory is kept for ``lmlab plot`` and ``lmlab generate``.

    python bench/cpu_quality.py                         # 600 s, into runs/bench-cpu-quality
    python bench/cpu_quality.py --budget 60 --out /tmp/q model.dropout=0   # any overrides
    for seed in 0 1 2; do python bench/cpu_quality.py --out /tmp/q$seed train.seed=$seed; done
"""

import argparse
import shutil
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import describe_machine  # noqa: E402
from lmlab.quickstart import quickstart  # noqa: E402
from lmlab.training.rundir import RunDir  # noqa: E402

SHARED_TEXT = REPO.parent / "shared" / "data" / "tinystories"
TARGET_BPB = 0.98


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=600.0,
                        help="seconds of training steps (train.time_budget_s)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-cpu-quality",
                        help="folder for the tokenizer, token files and run (replaced)")
    parser.add_argument("--text-dir", type=Path, default=SHARED_TEXT,
                        help="folder with train.txt and valid.txt")
    parser.add_argument("overrides", nargs="*", help="config overrides, section.key=value")
    args = parser.parse_args()
    texts = [args.text_dir / "train.txt", args.text_dir / "valid.txt"]
    missing = [str(p) for p in texts if not p.is_file()]
    if missing:
        sys.exit(f"cpu_quality: {', '.join(missing)} not found (the shared TinyStories sample)")
    shutil.rmtree(args.out, ignore_errors=True)

    result = quickstart(args.out, *texts,
                        overrides=[f"train.time_budget_s={args.budget}", *args.overrides],
                        on_step=lambda line: print(f"  {line}", flush=True))
    metrics = result.metrics
    train_time = RunDir(result.run_dir).read_metrics()[-1]["train_time_s"]
    bpb = metrics["val/bpb"]
    print(f"machine: {describe_machine(torch.device('cpu'))}, {torch.get_num_threads()} threads")
    print(f"run: {result.run_dir} ({result.status}, {result.step:,} steps)")
    print(f"tokens/s: {result.tokens / train_time:,.0f}   tokens seen: {result.tokens:,}")
    print(f"val loss: {metrics['val/loss']:.4f}   val bits/byte: {bpb:.4f}  "
          f"(target <= {TARGET_BPB} in 600 s: {'met' if bpb <= TARGET_BPB else 'not met'})")


if __name__ == "__main__":
    main()
