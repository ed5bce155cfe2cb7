"""BPE training: the CS336 reference merges, special tokens, chunking, a naive reference, errors."""

import doctest
from collections import Counter
from itertools import pairwise

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.errors import DataError, TokenizerError
from lmlab.tokenizer import bpe, files, pretokenize, train, train_bpe
from lmlab.tokenizer.pretokenize import GPT2_PATTERN
from lmlab.tokenizer.train import count_file_pretokens
from tests.helpers.tokenizer_refs import FIXTURES, need, reference_merges, reference_vocab


@pytest.mark.parametrize("module", [bpe, files, pretokenize, train])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_matches_cs336_reference(workers):
    vocab, merges = train_bpe(
        need(FIXTURES / "corpus.en"), 500, ["<|endoftext|>"], num_workers=workers
    )
    assert merges == reference_merges()
    assert set(vocab.values()) == reference_vocab()
    assert vocab[0] == b"<|endoftext|>" and vocab[1] == b"\x00" and len(vocab) == 500


def test_special_tokens_never_merged():
    vocab, _ = train_bpe(need(FIXTURES / "tinystories_sample.txt"), 1000, ["<|endoftext|>"])
    assert [tok for tok in vocab.values() if b"<|" in tok] == [b"<|endoftext|>"]


def test_ties_go_to_the_greater_pair(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("ab cd")  # pre-tokens "ab", " cd": three pairs, each seen once
    _, merges = train_bpe(path, 257, [])
    assert merges == [(b"c", b"d")]


def test_chunked_counts_equal_whole_file(monkeypatch):
    path = need(FIXTURES / "corpus.en")
    whole = pretokenize.count_pretokens(
        path.read_text(encoding="utf-8"), pretokenize.special_token_regex(["<|endoftext|>"])
    )
    monkeypatch.setattr(train, "CHUNK_BYTES", 5000)
    for workers in (1, 2):
        assert count_file_pretokens(path, ["<|endoftext|>"], workers) == whole


def naive_bpe(text: str, vocab_size: int, special: str) -> list[tuple[bytes, bytes]]:
    """Textbook BPE: recount every pair after every merge."""
    words = Counter(
        tuple(bytes([b]) for b in piece.encode())
        for doc in text.split(special)
        for piece in regex.findall(GPT2_PATTERN, doc)
    )
    merges = []
    while len(merges) < vocab_size - 257:
        pairs = Counter()
        for word, n in words.items():
            for pair in pairwise(word):
                pairs[pair] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        merged = Counter()
        for word, n in words.items():
            out, i = [], 0
            while i < len(word):
                if word[i : i + 2] == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return merges


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(alphabet="aab bc\n'é1<|>", max_size=300),
    vocab_size=st.integers(257, 320),
)
def test_incremental_merges_equal_naive_recount(tmp_path_factory, text, vocab_size):
    path = tmp_path_factory.mktemp("bpe") / "t.txt"
    path.write_text(text + "<|e|>" + text[::-1], encoding="utf-8")
    vocab, merges = train_bpe(path, vocab_size, ["<|e|>"], num_workers=1)
    assert merges == naive_bpe(path.read_text(encoding="utf-8"), vocab_size, "<|e|>")
    assert len(vocab) == 257 + len(merges)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        train_bpe(tmp_path / "nope.txt", 300, [])


def test_empty_file(tmp_path):
    (tmp_path / "e.txt").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        train_bpe(tmp_path / "e.txt", 300, [])


def test_vocab_smaller_than_bytes_and_specials(tmp_path):
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(TokenizerError, match="vocab_size 256 is smaller than 256 bytes \\+ 1"):
        train_bpe(tmp_path / "t.txt", 256, ["<|endoftext|>"])


def test_empty_special_token(tmp_path):
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(TokenizerError, match="non-empty"):
        train_bpe(tmp_path / "t.txt", 300, [""])


@pytest.mark.parametrize("workers", [1, 2])
def test_invalid_utf8_names_the_byte_offset(tmp_path, workers):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello world " * 1000 + b"caf\xe9 " + b"more text " * 1000)
    with pytest.raises(DataError, match="invalid UTF-8 at byte offset 12003"):
        train_bpe(path, 300, [], num_workers=workers)
