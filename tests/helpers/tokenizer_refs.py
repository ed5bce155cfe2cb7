"""References for the tokenizer tests: GPT-2's byte notation, the CS336 fixtures, tiktoken, and
hypothesis's tricky texts."""

import json
import os
from pathlib import Path

import pytest
from hypothesis import strategies as st

from tests.helpers.paths import SHARED_DATA

FIXTURES = SHARED_DATA / "fixtures"
EOT = "<|endoftext|>"
# Text that stresses the regex and the units: contractions, digits, runs of spaces and newlines,
# whitespace beyond ASCII, words around the 15 bytes that a unit's packed key holds, other scripts.
# Not code points unassigned in Python's Unicode database (Cn): the `regex` module's newer tables
# make some of them letters (U+3D000 is one) where tiktoken's older ones do not.
TRICKY = st.lists(
    st.one_of(
        st.sampled_from(list(" \n\t'sdmtlvre0123 ...!?<|>") + [EOT, "  ", "\n\n", "'ll", "'ve"]),
        st.sampled_from(["\xa0", "\x85", "\u2003", "\u2028", "\u3000", "\u1680", "\x1c", "\x00"]),
        st.sampled_from(["a" * 7, "b" * 8, "c" * 14, "d" * 15, "e" * 16, "é" * 8, "lmlab.tokens"]),
        st.characters(codec="utf-8", exclude_categories=["Cn"]),
    ),
    max_size=30,
).map("".join)


def need(path: Path) -> Path:
    """``path`` if it exists, else skip the test with a reason."""
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


def gpt2_unicode_to_byte() -> dict[str, int]:
    """GPT-2's ``bytes_to_unicode`` table, inverted; written out here independently of lmlab."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def gpt2_token(text: str) -> bytes:
    table = gpt2_unicode_to_byte()
    return bytes(table[ch] for ch in text)


def reference_merges() -> list[tuple[bytes, bytes]]:
    lines = need(FIXTURES / "train-bpe-reference-merges.txt").read_text(encoding="utf-8")
    return [tuple(gpt2_token(t) for t in line.split(" ")) for line in lines.splitlines()]


def reference_vocab() -> set[bytes]:
    raw = json.loads(need(FIXTURES / "train-bpe-reference-vocab.json").read_text("utf-8"))
    return {tok.encode() if tok == "<|endoftext|>" else gpt2_token(tok) for tok in raw}


def tiktoken_gpt2():
    """tiktoken's ``gpt2`` encoding, offline from the shared cache."""
    tiktoken = pytest.importorskip("tiktoken")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(need(SHARED_DATA / "tiktoken-cache"))
    return tiktoken.get_encoding("gpt2")
