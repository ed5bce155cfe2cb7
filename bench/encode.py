"""Benchmark: lmlab ``Tokenizer.encode`` and ``lmlab tokenizer encode`` beside tiktoken ``gpt2``,
one run.

Both use the GPT-2 vocabulary and merges (lmlab reads them from the CS336 fixtures, tiktoken from
its offline cache) and must give the same ids, which is checked. Measured on TinyStories and OWT
train, and 20x concatenations of them, alternating lmlab and tiktoken so load hits both alike:

- ``encode``: one process, one thread. ``first pass`` is a fresh tokenizer (empty cache);
  ``warm`` is the best later pass (the steady state over a large corpus, where the cache of
  repeated text is full). tiktoken has no such cache: every pass is the same for it.
- ``tokenize``: :func:`lmlab.tokens.tokenize_file` with ``--workers`` processes (at most
  one per 4 MB of input) and a fresh tokenizer, including pool start-up and writing the ``.bin``.

Speeds are MB/s of UTF-8 input, the best of ``--repeats``; ratios are lmlab / tiktoken.

    python bench/encode.py [--repeats 3] [--workers N]
"""

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.tokenizer_common import DATA, SAMPLES, concatenated, describe_machine, label  # noqa: E402
from lmlab.tokenizer import Tokenizer  # noqa: E402
from lmlab.tokens import load_tokens, tokenize_file  # noqa: E402

EOT = "<|endoftext|>"
KINDS = ("tiktoken", "first", "warm", "tokenize")


def seconds(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"shared data not found at {DATA}")
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(DATA / "tiktoken-cache"))
    import tiktoken

    reference = tiktoken.get_encoding("gpt2")
    fixtures = DATA / "fixtures"
    gpt2 = Tokenizer.from_files(fixtures / "gpt2_vocab.json", fixtures / "gpt2_merges.txt", [EOT])

    def fresh() -> Tokenizer:
        return Tokenizer(gpt2.vocab, gpt2.merges, [EOT])

    print(f"# GPT-2 encoding, MB/s (best of {args.repeats}); {describe_machine()}")
    print(
        f"# tiktoken {tiktoken.__version__}, 1 thread; lmlab tokenizer encode: {args.workers} "
        "workers (one per 4 MB of input at most)"
    )
    print(
        f"{'file':<22}{'MB':>6}{'tiktoken':>10}{'1st pass':>10}{'ratio':>7}{'warm':>8}{'ratio':>7}"
        f"{'tokenize':>10}{'ratio':>7}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.bin"
        for path in [*SAMPLES, *(concatenated(src, 20, Path(tmp)) for src in SAMPLES)]:
            text = path.read_text(encoding="utf-8")
            expected = reference.encode(text, allowed_special={EOT})
            times: dict[str, list[float]] = {k: [] for k in KINDS}
            for _ in range(args.repeats):
                times["tiktoken"].append(seconds(reference.encode, text, allowed_special={EOT}))
                tokenizer = fresh()
                times["first"].append(seconds(tokenizer.encode, text))
                times["warm"].append(seconds(tokenizer.encode, text))
                run = partial(tokenize_file, fresh(), path, out, num_workers=args.workers)
                times["tokenize"].append(seconds(run, progress=False))
            assert tokenizer.encode(text) == expected, f"ids differ from tiktoken on {path}"
            assert load_tokens(out).tokens.tolist() == expected, f"tokenize differs on {path}"
            mb = len(text.encode("utf-8")) / 1e6
            speed = {name: mb / min(t) for name, t in times.items()}
            ref = speed["tiktoken"]
            print(
                f"{label(path):<22}{mb:>6.1f}{ref:>10.2f}{speed['first']:>10.2f}"
                f"{speed['first'] / ref:>7.2f}{speed['warm']:>8.2f}{speed['warm'] / ref:>7.2f}"
                f"{speed['tokenize']:>10.2f}{speed['tokenize'] / ref:>7.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
