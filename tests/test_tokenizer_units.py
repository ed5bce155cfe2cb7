"""The numpy unit cache of the encoder: units cut as UNIT_RE cuts them, exact keys, hash table."""

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.tokenizer import units as units_module
from lmlab.tokenizer.keytable import EMPTY, KeyTable
from lmlab.tokenizer.pretokenize import PRETOKEN_RE, UNIT_RE
from lmlab.tokenizer.units import MAX_KEY_BYTES, UnitCache, Units
from tests.helpers.tokenizer_refs import TRICKY


def test_docstring_examples():
    result = doctest.testmod(units_module)
    assert result.failed == 0 and result.attempted > 0


def _byte_spans(texts: list[str]) -> list[tuple[int, int]]:
    """Where UNIT_RE's units of each text lie in the texts' UTF-8 bytes joined together."""
    spans, offset = [], 0
    for text in texts:
        for unit in UNIT_RE.findall(text):
            spans.append((offset, offset + len(unit.encode())))
            offset = spans[-1][1]
    return spans


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(TRICKY, max_size=5))
def test_units_are_the_unit_pattern_units_of_each_text(texts):
    units = Units(texts)
    starts, ends = units.starts.tolist(), (units.starts + units.lengths).tolist()
    assert list(zip(starts, ends, strict=True)) == _byte_spans(texts)
    expected = [unit for text in texts for unit in UNIT_RE.findall(text)]
    assert units.texts(np.arange(len(units))) == expected
    assert units.is_ascii(np.arange(len(units))).tolist() == [u.isascii() for u in expected]
    per_text = np.cumsum([len(UNIT_RE.findall(text)) for text in texts])
    assert units.text_unit_ends.tolist() == per_text.tolist()


@settings(max_examples=300, deadline=None)
@given(text=TRICKY)
def test_a_pre_token_is_one_unit(text):
    """The encoder caches pre-tokens as units, made with ``one_each`` (not cut again)."""
    pieces = PRETOKEN_RE.findall(text)
    one_each, cut = Units(pieces, one_each=True), Units(pieces)
    assert cut.starts.tolist() == one_each.starts.tolist()
    assert cut.lengths.tolist() == one_each.lengths.tolist()
    assert (cut.k1 == one_each.k1).all() and (cut.k2 == one_each.k2).all()


def test_units_on_every_code_point():
    """Whitespace is found in UTF-8 bytes (up to three per character): each code point, between
    two letters, must be cut exactly as the `re` pattern cuts it."""
    everything = "".join(f"a{chr(c)}b" for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    units = Units([everything])
    assert units.texts(np.arange(len(units))) == UNIT_RE.findall(everything)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(TRICKY, max_size=5))
def test_keys_are_exact(texts):
    """Two units of at most MAX_KEY_BYTES have the same key exactly when they are the same text."""
    units = Units(texts)
    short = np.flatnonzero(units.lengths <= MAX_KEY_BYTES)
    keys = list(zip(units.k1[short].tolist(), units.k2[short].tolist(), strict=True))
    by_key = dict(zip(keys, units.texts(short), strict=True))
    assert len(by_key) == len(set(units.texts(short)))


def test_keys_tell_apart_length_and_late_bytes():
    texts = ["a", "a\x00", "a\x00\x00", "abcdefgh", "abcdefghi", "abcdefghijklmno"]
    texts.append("abcdefghijklmnp")  # differs from the last in its 15th byte
    units = Units(texts)
    assert len(units) == len(texts) and units.lengths.max() == MAX_KEY_BYTES
    assert len(set(zip(units.k1.tolist(), units.k2.tolist(), strict=True))) == len(texts)
    assert Units(["a" * 16]).lengths.tolist() == [MAX_KEY_BYTES + 1]  # looked up by its text


def test_unit_cache_seeds_learning_and_forgetting():
    long_seed = "  " + "x" * 20
    cache = UnitCache([" the", long_seed], [262, 9000])
    units = Units([f" the cat{long_seed} the"])
    assert cache.look_up(units).tolist() == [0, EMPTY, 1, 0]
    cache.add(units, np.array([1]), np.array([3797, 3797]), np.array([2]))  # " cat": 2 made up ids
    assert len(cache) == 1
    ids, ends = cache.ids(cache.look_up(units))
    assert ids.tolist() == [262, 3797, 3797, 9000, 262] and ends.tolist() == [1, 3, 4, 5]
    cache.add(units, np.array([0, 1]), np.array([1, 2]), np.array([1, 2]))  # cached already
    assert len(cache) == 1 and cache.ids(cache.look_up(units))[0].tolist()[:3] == [262, 3797, 3797]
    cache.forget()
    assert len(cache) == 0 and cache.look_up(units).tolist() == [0, EMPTY, 1, 0]


@pytest.mark.parametrize("width", [1, 2])
def test_key_table_finds_what_was_added_and_nothing_else(width):
    rng = np.random.default_rng(0)
    keys = [rng.integers(0, 1 << 62, size=60_000).astype(np.uint64) for _ in range(width)]
    keys[0][:1000] = np.arange(1000, dtype=np.uint64)  # runs of nearby keys
    table = KeyTable(width, capacity=10)
    for start in range(0, 40_000, 7_000):  # added in parts: the table grows several times
        stop = min(start + 7_000, 40_000)
        table.add([k[start:stop] for k in keys], np.arange(start, stop))
    assert len(table) == 40_000
    assert (table.get(keys) == np.where(np.arange(60_000) < 40_000, np.arange(60_000), EMPTY)).all()
    if width == 2:  # the same first word with another second word is another key
        assert (table.get([keys[0][:1000], keys[1][:1000] + np.uint64(1)]) == EMPTY).all()


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(TRICKY, max_size=5))
def test_distinct_keeps_one_unit_of_each_text(texts):
    units = Units(texts)
    every = np.arange(len(units))
    firsts = units.distinct(every)
    assert sorted(units.texts(firsts)) == sorted(set(units.texts(every)))


def test_distinct_is_exact_when_mixed_keys_collide():
    """Units are grouped by one word mixed from their two; two keys that mix to the same word
    must still count as two."""
    units = Units(["a", "b", "a", "b", "b"])
    mix, word = 0xC2B2AE3D27D4EB4F, 2**64
    a1, a2, b2 = 12345, 777, 999
    b1 = a1 ^ (a2 * mix % word) ^ (b2 * mix % word)  # a1 ^ a2 * mix == b1 ^ b2 * mix
    units.k1 = np.array([a1, b1, a1, b1, b1], dtype=np.uint64)
    units.k2 = np.array([a2, b2, a2, b2, b2], dtype=np.uint64)
    assert sorted(units.texts(units.distinct(np.arange(5)))) == ["a", "b"]
