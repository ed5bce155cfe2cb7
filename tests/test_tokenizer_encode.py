"""Tokenizer: exact GPT-2 ids (tiktoken), round trips, special tokens, streaming, files, errors."""

import doctest
import json
import re
import tracemalloc
from contextlib import contextmanager
from itertools import chain

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.errors import TokenizerError
from lmlab.tokenizer import Tokenizer, encoder, tokenizer, train_bpe
from lmlab.tokenizer.bpe import BatchMerger, PairTable, apply_merges, split_at
from lmlab.tokenizer.pretokenize import (
    ASCII_PRETOKEN_RE,
    PRETOKEN_RE,
    UNIT_RE,
    WHITESPACE,
    is_one_pretoken,
)
from tests.helpers.paths import SHARED_DATA
from tests.helpers.tokenizer_refs import (
    EOT,
    FIXTURES,
    TRICKY,
    gpt2_unicode_to_byte,
    need,
    tiktoken_gpt2,
)

TEXTS = [
    FIXTURES / "address.txt",
    FIXTURES / "german.txt",
    FIXTURES / "corpus.en",
    FIXTURES / "tinystories_sample.txt",
    FIXTURES / "special_token_double_newlines_non_whitespace.txt",
    FIXTURES / "special_token_trailing_newlines.txt",
    SHARED_DATA / "tinystories" / "valid.txt",
    SHARED_DATA / "owt" / "train.txt",
]


@contextmanager
def encoding_path(short: bool):
    """Short texts are encoded unit by unit through a dict, longer ones in numpy batches
    (encoder.SHORT_CHARS); with ``short=False`` every text takes the batch path."""
    saved = encoder.SHORT_CHARS
    encoder.SHORT_CHARS = saved if short else -1
    try:
        yield
    finally:
        encoder.SHORT_CHARS = saved


PATHS = pytest.mark.parametrize("short", [True, False], ids=["short path", "batch path"])


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    vocab, merges = need(FIXTURES / "gpt2_vocab.json"), need(FIXTURES / "gpt2_merges.txt")
    return Tokenizer.from_files(vocab, merges, special_tokens=[EOT])


@pytest.fixture(scope="module")
def reference():
    return tiktoken_gpt2()


def test_docstring_examples():
    assert doctest.testmod(tokenizer).failed == 0


@PATHS
@pytest.mark.parametrize("path", TEXTS, ids=lambda p: p.name)
def test_matches_tiktoken_gpt2(gpt2, reference, path, short):
    text = need(path).read_text(encoding="utf-8")
    with encoding_path(short):
        ids = gpt2.encode(text)
    assert ids == reference.encode(text, allowed_special={EOT})
    assert gpt2.decode(ids) == text


@PATHS
@settings(max_examples=150, deadline=None)
@given(text=TRICKY)
def test_matches_tiktoken_on_any_text(gpt2, reference, text, short):
    with encoding_path(short):
        ids = gpt2.encode(text)
    assert ids == reference.encode(text, allowed_special={EOT})
    assert gpt2.decode(ids) == text


@PATHS
@settings(max_examples=100, deadline=None)
@given(text=st.text())
def test_round_trip_any_string(gpt2, text, short):
    with encoding_path(short):
        assert gpt2.decode(gpt2.encode(text)) == text


@PATHS
@settings(max_examples=50, deadline=None)
@given(text=st.lists(st.one_of(TRICKY, st.characters(categories=["Cs"]))).map("".join))
def test_surrogates_encode_as_in_tiktoken(gpt2, reference, text, short):
    """Lone surrogates (not Unicode text, but a str may hold them) become U+FFFD, as in tiktoken."""
    with encoding_path(short):
        assert gpt2.encode(text) == reference.encode(text, allowed_special={EOT})


@PATHS
@settings(max_examples=30, deadline=None)
@given(texts=st.lists(TRICKY, max_size=8))
def test_encode_batch_equals_encode_of_each(gpt2, reference, texts, short):
    fresh = Tokenizer(gpt2.vocab, gpt2.merges, [EOT])  # the batch learns every word at once
    with encoding_path(short):
        assert fresh.encode_batch(texts) == [gpt2.encode(text) for text in texts]
    assert fresh.encode_batch(texts) == reference.encode_batch(texts, allowed_special={EOT})


def test_short_texts_and_long_ones_take_their_paths(gpt2):
    """A sentence is looked up in the dict of short texts, a long text in the numpy cache."""
    tok = Tokenizer(gpt2.vocab, gpt2.merges, [EOT])
    tok.encode("Hello there, lmlab!")
    learned = len(tok._encoder.short_units) - len(tok._encoder.whole)
    assert learned > 0 and len(tok._encoder.units) == 0
    tok.encode(" lmlab" * encoder.SHORT_CHARS)
    assert len(tok._encoder.units) > 0
    assert len(tok._encoder.short_units) - len(tok._encoder.whole) == learned


def test_text_resembling_a_special_token_is_plain_text(gpt2, reference):
    for text in ["<|endoftext|", "<|endoftext>", "<| endoftext|>", "<|ENDOFTEXT|>"]:
        assert gpt2.encode(text) == reference.encode_ordinary(text)


def test_a_special_token_in_the_vocabulary_is_plain_text_without_specials(gpt2, reference):
    """GPT-2's vocabulary holds ``<|endoftext|>``; a tokenizer without special tokens must still
    cut it like any other text (a unit that is a token is that token only if the regex keeps it
    whole)."""
    plain = Tokenizer(gpt2.vocab, gpt2.merges)
    for text in [EOT, " " + EOT, "a" + EOT + "b " + EOT + "\n"]:
        assert plain.encode(text) == reference.encode_ordinary(text)


def test_overlapping_special_tokens_match_longest_first(gpt2):
    double = EOT + EOT
    tok = Tokenizer(gpt2.vocab, gpt2.merges, special_tokens=[EOT, double])
    ids = tok.encode("a" + double + "b" + EOT)
    assert ids[1] == tok.special_ids[double] and ids[3] == tok.special_ids[EOT]
    assert len(ids) == 4 and tok.decode(ids) == "a" + double + "b" + EOT


def test_decode_replaces_invalid_bytes(gpt2):
    ids = {tok: i for i, tok in gpt2.vocab.items()}
    assert gpt2.decode([ids[b"a"], ids[b"\xc3"], ids[b"b"]]) == "a\ufffdb"  # C3 starts "ÿ", "é"...
    assert gpt2.decode([ids[b"\xc3"], ids[b"\xbf"]]) == "ÿ"


def test_decode_unknown_id(gpt2):
    with pytest.raises(TokenizerError, match="token id 99999999 is not in the vocabulary"):
        gpt2.decode([1, 99999999])


@pytest.mark.parametrize(
    "name", ["tinystories_sample.txt", "special_token_trailing_newlines.txt", "corpus.en"]
)
def test_encode_iterable_over_file_lines(gpt2, name):
    path = need(FIXTURES / name)
    with open(path, encoding="utf-8") as f:
        streamed = list(gpt2.encode_iterable(f))
    assert streamed == gpt2.encode(path.read_text(encoding="utf-8"))


@contextmanager
def encode_at_every_safe_cut():
    """Streaming gathers ``STREAM_CHARS`` before encoding; with 0, short texts exercise the cuts."""
    saved, tokenizer.STREAM_CHARS = tokenizer.STREAM_CHARS, 0
    try:
        yield
    finally:
        tokenizer.STREAM_CHARS = saved


@settings(max_examples=150, deadline=None)
@given(text=TRICKY, cuts=st.lists(st.integers(0, 60), max_size=8))
def test_encode_iterable_however_the_text_is_cut(gpt2, text, cuts):
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    with encode_at_every_safe_cut():
        assert list(gpt2.encode_iterable(pieces)) == gpt2.encode(text)


def test_encode_iterable_cut_anywhere_inside_specials_and_whitespace(gpt2):
    text = f"Hi  there{EOT}\n\n  {EOT}{EOT}x 's  \n"
    expected = gpt2.encode(text)
    with encode_at_every_safe_cut():
        for cut in range(len(text) + 1):
            assert list(gpt2.encode_iterable([text[:cut], text[cut:]])) == expected, cut
        assert list(gpt2.encode_iterable(text)) == expected  # one character at a time


def test_encode_iterable_memory_does_not_grow(gpt2, tmp_path):
    sample = need(FIXTURES / "tinystories_sample.txt").read_text(encoding="utf-8")
    gpt2.encode(sample)  # warm the unit cache, which is bounded separately
    peaks = []
    for copies in (200, 1000):  # 0.8 and 3.8 MB: 12x and 60x STREAM_CHARS, line by line
        path = tmp_path / f"big{copies}.txt"
        path.write_text(sample * copies, encoding="utf-8")
        tracemalloc.start()
        with open(path, encoding="utf-8") as f:
            count = sum(1 for _ in gpt2.encode_iterable(f))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert count == copies * len(gpt2.encode(sample))
    # The text, units and numpy temporaries of one STREAM_CHARS piece (64 K characters): a
    # megabyte or two, whatever the file's size.
    assert peaks[1] < 3_000_000, f"peak {peaks[1]} bytes while streaming a 3.8 MB file"
    assert peaks[1] < 1.2 * peaks[0], f"peak memory grew with the input: {peaks}"


def test_save_load_round_trip(tmp_path):
    vocab, merges = train_bpe(need(FIXTURES / "tinystories_sample.txt"), 400, [EOT])
    tok = Tokenizer(vocab, merges, [EOT])
    tok.save(tmp_path / "tok")
    loaded = Tokenizer.load(tmp_path / "tok")
    assert loaded.vocab == vocab and loaded.merges == merges and loaded.special_tokens == [EOT]
    assert loaded.fingerprint() == tok.fingerprint()
    text = (FIXTURES / "tinystories_sample.txt").read_text(encoding="utf-8")
    assert loaded.encode(text) == tok.encode(text)


def test_fingerprint_tells_tokenizers_apart():
    """Tokenizers whose ids mean the same share a fingerprint however they were built; any
    change to a byte's id, a merge, its order, another token or a special token shows."""
    merges = [(b"a", b"b"), (b"b", b"c"), (b"ab", b"c")]
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"ab", 257: b"bc", 258: b"abc", 259: b"xy"}

    def fingerprint(vocab=vocab, merges=merges, specials=(EOT,)) -> str:
        return Tokenizer(vocab, merges, list(specials)).fingerprint()

    same = [
        fingerprint(),
        fingerprint(vocab=dict(reversed(vocab.items()))),
        fingerprint(merges=[*merges, merges[0]]),  # a repeated merge is never used
    ]
    assert len(set(same)) == 1
    different = [
        fingerprint(),
        fingerprint(vocab=vocab | {ord("x"): b"y", ord("y"): b"x"}),
        fingerprint(merges=[(b"b", b"c"), (b"a", b"b"), (b"ab", b"c")]),
        fingerprint(merges=[(b"a", b"b"), (b"b", b"c"), (b"a", b"bc")]),
        fingerprint(merges=merges[:2]),
        fingerprint(vocab={**{i: t for i, t in vocab.items() if i != 258}, 300: b"abc"},
                    specials=()),
        fingerprint(vocab=vocab | {259: b"xz"}),
        fingerprint(vocab={**{i: t for i, t in vocab.items() if i != 259}, 260: b"xy"}),
        fingerprint(vocab=vocab | {260: b"ab"}),  # the same bytes at a second id
        fingerprint(vocab=vocab | {10**9: b"xy"}),  # far apart (vocab_size 10**9 + 1)
        fingerprint(specials=()),
        fingerprint(specials=("<|end|>",)),
        fingerprint(specials=(EOT, "ab")),  # a special token already in the vocabulary
    ]
    assert len(set(different)) == len(different)


def test_saved_files_are_gpt2_style(gpt2, tmp_path):
    gpt2.save(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    assert vocab == json.loads((FIXTURES / "gpt2_vocab.json").read_text(encoding="utf-8"))
    saved = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert saved == (FIXTURES / "gpt2_merges.txt").read_text(encoding="utf-8").splitlines()


def _write_tokenizer(directory, vocab: str | None = None, merges: str | None = None):
    directory.mkdir(exist_ok=True)
    if vocab is not None:
        (directory / "vocab.json").write_text(vocab, encoding="utf-8")
    if merges is not None:
        (directory / "merges.txt").write_text(merges, encoding="utf-8")
    return directory


BYTES_VOCAB = json.dumps(gpt2_unicode_to_byte())  # the 256 single bytes, no merges


@pytest.mark.parametrize(
    ("vocab", "merges", "message"),
    [
        (None, "", "vocab.json: no such file"),
        (BYTES_VOCAB, None, "merges.txt: no such file"),
        ("{not json", "", "vocab.json: not valid JSON"),
        ('{"a": "x"}', "", "has id 'x', not an integer"),
        ('{"a": 0, "b": -1}', "", "token 'b' has id -1, not an integer"),
        ('{"a": 0, "b": true}', "", "token 'b' has id True, not an integer"),
        ('{"a": 0}', "", "vocabulary lacks 255 single bytes"),
        ('{"a": 0, "b": 0}', "", "id 0 is used twice"),
        ('{"a": 0, "b c": 1}', "", "vocab.json: token: ' ' is not a GPT-2 byte character"),
        (BYTES_VOCAB, "a b c\n", "merges.txt:1: expected two tokens"),
        (BYTES_VOCAB, "#version 0.2\na b\n\nc  d\n", "merges.txt:4: expected two tokens"),
        (BYTES_VOCAB, "a b\r\nc\r\n", "merges.txt:2: expected two tokens"),
        (BYTES_VOCAB, "#version 0.2\na b\n\nc \td\n", r"merges.txt:4: '\\t' is not a GPT-2"),
        (BYTES_VOCAB, "a b\n", "merge 1 \\(a b\\) uses a token missing"),
    ],
)
def test_malformed_tokenizer_directory(tmp_path, vocab, merges, message):
    with pytest.raises(TokenizerError, match=message):
        Tokenizer.load(_write_tokenizer(tmp_path / "tok", vocab, merges))


def test_merges_of_str_not_bytes():
    """The Python API takes merges as byte strings; text is a missing token, not a crash."""
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"ab"}
    with pytest.raises(TokenizerError, match=r"merge 1 \('a' 'b'\) uses a token missing"):
        Tokenizer(vocab, [("a", "b")])


def test_missing_tokenizer_directory(tmp_path):
    with pytest.raises(TokenizerError, match="no such tokenizer directory"):
        Tokenizer.load(tmp_path / "nope")


def test_every_token_encodes_as_itself(gpt2):
    """The encoder takes a pre-token that is a whole token as that token (as tiktoken does)
    instead of replaying merges; for GPT-2 and for vocabularies lmlab trains, both agree."""
    trained = Tokenizer(*train_bpe(need(FIXTURES / "corpus.en"), 1000, [EOT]), [EOT])
    for tok in (gpt2, trained):
        byte_ids, ranked = _ranked(tok)
        for idx, token in tok.vocab.items():
            if token != EOT.encode():
                assert apply_merges([byte_ids[b] for b in token], ranked) == [idx], token


def _ranked(tok: Tokenizer) -> tuple[list[int], dict]:
    ids = {t: i for i, t in sorted(tok.vocab.items(), reverse=True)}
    ranked = {(ids[a], ids[b]): (rank, ids[a + b]) for rank, (a, b) in enumerate(tok.merges)}
    return [ids[bytes([b])] for b in range(256)], ranked


# Words that need many merges, repeated pairs (`aaaa`, runs of spaces) and arbitrary bytes.
WORDS = st.lists(
    st.one_of(
        st.binary(min_size=1, max_size=80),
        st.sampled_from(["a", "e", " ", "-", "ab", "the", "ing"]).flatmap(
            lambda unit: st.integers(1, 40).map(lambda n: (unit * n).encode())
        ),
        st.text(min_size=1, max_size=30).map(str.encode),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(words=WORDS)
def test_batch_merger_equals_one_word_at_a_time(gpt2, words):
    byte_ids, ranked = _ranked(gpt2)
    merger = BatchMerger(byte_ids, ranked)
    assert merger.batched
    expected = [apply_merges([byte_ids[b] for b in word], ranked) for word in words]
    assert merger(words) == expected
    ids, ends = merger._merge_batch(words)  # long words too, without the cut-off
    assert split_at(ids.tolist(), ends.tolist()) == expected


def test_pair_table_finds_every_merge_and_nothing_else(gpt2):
    _, ranked = _ranked(gpt2)
    pairs = np.array(list(ranked), dtype=np.int64)
    values = np.array(list(ranked.values()), dtype=np.int64)
    table = PairTable(pairs, values[:, 0], values[:, 1])
    rank, product = table.look_up(pairs[:, 0], pairs[:, 1])
    assert (rank == values[:, 0]).all() and (product == values[:, 1]).all()
    others = np.random.default_rng(0).integers(0, len(gpt2.vocab), size=(20_000, 2))
    unknown = np.array([tuple(pair) not in ranked for pair in others.tolist()])
    rank, _ = table.look_up(others[unknown, 0], others[unknown, 1])
    assert unknown.sum() > 19_000 and (rank == np.iinfo(np.int64).max).all()


def test_batch_merger_on_merges_lmlab_learned():
    """Merges from train_bpe replay in batches too, with the same result as one at a time."""
    text = need(FIXTURES / "corpus.en").read_text(encoding="utf-8")
    byte_ids, ranked = _ranked(Tokenizer(*train_bpe(need(FIXTURES / "corpus.en"), 600, [EOT])))
    merger = BatchMerger(byte_ids, ranked)
    words = sorted({piece.encode() for piece in PRETOKEN_RE.findall(text)})
    assert merger.batched and len(words) > 1000
    assert merger(words) == [apply_merges([byte_ids[b] for b in w], ranked) for w in words]


def test_batch_merger_falls_back_when_a_product_merges_early():
    """With a merge that uses a token before the merge that makes it, merging all occurrences of
    the best pair at once could differ from one at a time, so the merger must not batch."""
    byte_ids = list(range(256))
    a, b, c = b"abc"
    ranked = {(256, c): (0, 257), (a, b): (1, 256), (b, c): (2, 258)}
    merger = BatchMerger(byte_ids, ranked)
    assert not merger.batched
    words = [b"abcabc", b"ababc", b"abcbc"]
    assert merger(words) == [apply_merges(list(w), ranked) for w in words]


@PATHS
def test_encoding_with_a_tiny_cache(gpt2, reference, monkeypatch, short):
    """The caches of units and pre-tokens forget what they learned (keeping the vocabulary's
    whole tokens) before the next input once they hold more than CACHE_SIZE; ids stay exact."""
    monkeypatch.setattr(encoder, "CACHE_SIZE", 30)
    text = need(FIXTURES / "corpus.en").read_text(encoding="utf-8")
    tok = Tokenizer(gpt2.vocab, gpt2.merges, [EOT])
    whole = tok._encoder.whole
    for piece in (text[:2000], text[2000:6000], text[:2000]):
        with encoding_path(short):
            assert tok.encode(piece) == reference.encode(piece, allowed_special={EOT})
        units = set(UNIT_RE.findall(piece)) - whole.keys()
        pieces = set(chain.from_iterable(map(PRETOKEN_RE.findall, units))) - whole.keys()
        learned = len(tok._encoder.short_units) - len(whole) if short else len(tok._encoder.units)
        assert learned == len(units | pieces) > 30  # only this text's


@pytest.mark.parametrize("batch_chars", [1, 100, 2000])
def test_encoding_in_small_batches(gpt2, reference, monkeypatch, batch_chars):
    """Long input is cut at safe points and encoded BATCH_CHARS at a time; ids stay exact."""
    monkeypatch.setattr(encoder, "BATCH_CHARS", batch_chars)
    tok = Tokenizer(gpt2.vocab, gpt2.merges, [EOT])
    texts = [need(path).read_text(encoding="utf-8")[:5000] for path in TEXTS]
    texts += ["", " ", "x" * 300, "  \n\n  ", f"{EOT}{EOT} a{EOT}"]
    assert tok.encode_batch(texts) == reference.encode_batch(texts, allowed_special={EOT})
    for text in texts:
        assert tok.encode(text) == reference.encode(text, allowed_special={EOT})


@settings(max_examples=200, deadline=None)
@given(text=TRICKY)
def test_units_cut_text_where_pre_tokens_end(text):
    """The encoder caches units on their own, so each must pre-tokenize alone as in the text."""
    units = UNIT_RE.findall(text)
    assert "".join(units) == text
    assert list(chain.from_iterable(map(PRETOKEN_RE.findall, units))) == PRETOKEN_RE.findall(text)


ASCII_TEXT = st.lists(
    st.one_of(
        st.characters(max_codepoint=127),
        st.sampled_from(["'s", "'t", "'ll", "'ve", "'re", "'d", "'m", "  ", " \n", "\x1c ", "A1"]),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=ASCII_TEXT)
def test_ascii_pattern_equals_the_gpt2_pattern_on_ascii_text(text):
    """`re` cuts ASCII text with its own pattern (twice as fast); it must cut exactly alike."""
    assert ASCII_PRETOKEN_RE.findall(text) == PRETOKEN_RE.findall(text)


@settings(max_examples=300, deadline=None)
@given(text=TRICKY)
def test_a_full_match_is_exactly_one_pre_token(text):
    """The vocabulary's single-pre-token texts are found with `fullmatch` (`is_one_pretoken`)."""
    one = len(PRETOKEN_RE.findall(text)) == 1
    for pattern in (PRETOKEN_RE, ASCII_PRETOKEN_RE) if text.isascii() else (PRETOKEN_RE,):
        assert (pattern.fullmatch(text) is not None) == one
    assert is_one_pretoken(text) == one


def test_ascii_pattern_on_every_pair_of_ascii_characters():
    for a in map(chr, range(128)):
        text = "".join(a + chr(b) + " " for b in range(128))
        assert ASCII_PRETOKEN_RE.findall(text) == PRETOKEN_RE.findall(text)


def test_unit_whitespace_is_the_regex_whitespace():
    """Units are cut with Python's `re` for speed; its whitespace class must equal `\\s` of the
    `regex` module that the GPT-2 pattern uses, on every code point."""
    everything = "".join(map(chr, range(0x110000)))
    ours = re.findall(f"[{WHITESPACE}]", everything)
    assert ours == regex.findall(r"\s", everything) and len(ours) > 20
