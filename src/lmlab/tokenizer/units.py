"""Units of text found, keyed and looked up by numpy: all the units of a batch of texts at once.

A *unit* is a run of whitespace and the run of non-space after it (:data:`.pretokenize.UNIT_RE`).
Units cut text where pre-tokens end, so each encodes on its own exactly as within the text, and
natural text repeats units (`` the``, `` said,``) so much that encoding caches their ids. Finding
and looking up units one Python string at a time costs about as much as all of tiktoken's
encoding (measured: docs/benchmarks.md, "Encoding"), so here they are found in the texts' UTF-8
bytes and each unit of up to ``MAX_KEY_BYTES`` bytes is packed, exactly, into a key of two 64-bit
words (its bytes and its length) that a :class:`.KeyTable` finds in one vectorized lookup. Longer
units (under 1% of web text's) are looked up by their text.
"""

import re
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from lmlab.tokenizer.keytable import EMPTY, KeyTable, mix
from lmlab.tokenizer.pretokenize import WHITESPACE

MAX_KEY_BYTES = 15
"""Longest unit with a packed key: 8 bytes in the first word, 7 and the length in the second."""

_SPACE_CHARS = list(filter(re.compile(f"[{WHITESPACE}]").match, map(chr, range(0x3001))))
"""The characters of :data:`.pretokenize.WHITESPACE` (all below U+3001)."""
_IS_SPACE_BYTE = np.zeros(256, dtype=bool)
_IS_SPACE_BYTE[[ord(c) for c in _SPACE_CHARS if c.isascii()]] = True
# The UTF-8 spellings of the other whitespace characters, as integers, by their length in bytes.
_SPELLINGS = [c.encode() for c in _SPACE_CHARS]
_WIDE_SPACES = {
    width: np.array([int.from_bytes(s, "big") for s in _SPELLINGS if len(s) == width])
    for width in (2, 3)
}
_LOW_BYTES = np.array([0] + [(1 << (8 * n)) - 1 for n in range(1, 9)], dtype=np.uint64)
_ONE, _SIXTY_THREE, _LENGTH_SHIFT = np.uint64(1), np.uint64(63), np.uint64(56)


class Units:
    """The units of a batch of texts, as spans of the texts' UTF-8 bytes joined together.

    ``starts`` and ``lengths`` (``(units,)``) are byte offsets into ``buffer``; ``k1``, ``k2`` the
    keys (meaningful for units of at most ``MAX_KEY_BYTES``). A text's first unit begins with
    the text, so no unit spans two texts.
    """

    def __init__(self, texts: Sequence[str], *, one_each: bool = False) -> None:
        """The units of ``texts``; with ``one_each``, texts known to be one unit each (pre-tokens,
        tokens), which are then not cut but encoded together (faster for many)."""
        joined = "".join(texts)
        data = joined.encode("utf-8")
        size = len(data)
        # Zero padding to whole 64-bit words, and two more, so that keys read past a unit's end.
        self.buffer = data + bytes(-size % 8 + 16)
        self.ascii = joined.isascii()
        self._size = size
        text_ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)))
        if not self.ascii:
            text_ends = _byte_offsets(data, text_ends)
        if one_each:
            self.starts = text_ends - np.diff(text_ends, prepend=0)
        else:
            is_start = np.zeros(size, dtype=bool)
            is_start[1:] = self.space[1:] & ~self.space[:-1]  # a \S\s position
            is_start[text_ends[text_ends < size]] = True  # where the next text starts
            is_start[:1] = True
            self.starts = np.flatnonzero(is_start)
        self.text_unit_ends = np.searchsorted(self.starts, text_ends)
        """How many units the texts up to and including each one hold."""
        self.lengths = np.diff(self.starts, append=size)
        self.k1, self.k2 = _keys(np.frombuffer(self.buffer, dtype="<u8"), self.starts, self.lengths)

    def __len__(self) -> int:
        return len(self.starts)

    @cached_property
    def space(self) -> np.ndarray:
        """Whether each byte is (part of) a whitespace character: found when units are cut or
        asked whether they :meth:`stand_alone`, not for texts that are one unit each."""
        return _space_mask(self.buffer, self._size, self.ascii)

    def texts(self, index: np.ndarray) -> list[str]:
        """The text of each unit in ``index``."""
        return [unit.decode("utf-8") for unit in self.bytes(index)]

    def bytes(self, index: np.ndarray) -> list[bytes]:
        """The UTF-8 bytes of each unit in ``index``."""
        buffer, starts = self.buffer, self.starts[index]
        spans = zip(starts.tolist(), (starts + self.lengths[index]).tolist(), strict=True)
        return [buffer[start:end] for start, end in spans]

    def joined(self, index: np.ndarray) -> str:
        """The units in ``index`` joined into one text."""
        lengths = self.lengths[index]
        ends = np.cumsum(lengths)
        # Byte k of the result is byte starts[u] + (k - (ends[u] - lengths[u])) of the buffer.
        at = np.repeat(self.starts[index] - (ends - lengths), lengths) + np.arange(lengths.sum())
        return np.frombuffer(self.buffer, dtype=np.uint8)[at].tobytes().decode("utf-8")

    def is_ascii(self, index: np.ndarray) -> np.ndarray:
        """Whether each unit in ``index`` is ASCII (no byte of 0x80 or more between its ends)."""
        if self.ascii:
            return np.ones(len(index), dtype=bool)
        wide = np.flatnonzero(np.frombuffer(self.buffer, dtype=np.uint8) >= 0x80)
        starts = self.starts[index]
        return np.searchsorted(wide, starts) == np.searchsorted(wide, starts + self.lengths[index])

    def distinct(self, index: np.ndarray) -> np.ndarray:
        """One of the units in ``index`` for each distinct unit among them."""
        is_long = self.lengths[index] > MAX_KEY_BYTES
        short, long = index[~is_long], index[is_long]
        # Sorting one mixed word is cheaper than sorting by two; equal keys then lie together,
        # unless two keys share a mixed word, which takes the exact sort instead.
        def same_as_previous(order: np.ndarray) -> np.ndarray:
            k1, k2 = self.k1[short[order]], self.k2[short[order]]
            return (k1[1:] == k1[:-1]) & (k2[1:] == k2[:-1])

        mixed = mix([self.k1[short], self.k2[short]])
        order = np.argsort(mixed)
        same = same_as_previous(order)
        if (~same & (mixed[order][1:] == mixed[order][:-1])).any():
            order = np.lexsort((self.k2[short], self.k1[short]))
            same = same_as_previous(order)
        first = np.concatenate(([True], ~same))[: len(order)]
        long_ones = dict(zip(self.texts(long), long.tolist(), strict=True)).values()
        return np.concatenate((short[order[first]], np.fromiter(long_ones, np.int64)))

    def stand_alone(self, index: np.ndarray) -> np.ndarray:
        """Whether each unit in ``index`` starts with non-space or is all space.

        Units join into one text that pre-tokenizes as they do apart when each ends in non-space
        and the next starts with space, which only a text's first unit (may start otherwise) and
        last unit (may be all space) can break.
        """
        starts = self.starts[index]
        return ~self.space[starts] | self.space[starts + self.lengths[index] - 1]


def _byte_offsets(data: bytes, chars: np.ndarray) -> np.ndarray:
    """Where the text ``data`` (UTF-8) decodes to reaches the character offsets ``chars``
    (sorted): each offset plus the continuation bytes before that character.

    >>> _byte_offsets("aé€b".encode(), np.array([0, 1, 2, 3, 4])).tolist()
    [0, 1, 3, 6, 7]
    """
    continuation = np.flatnonzero((np.frombuffer(data, dtype=np.uint8) & 0xC0) == 0x80)
    # The j-th continuation byte belongs to character continuation[j] - j - 1.
    owner = continuation - np.arange(len(continuation))
    return chars + np.searchsorted(owner, chars, side="right")


def _space_mask(buffer: bytes, size: int, ascii: bool) -> np.ndarray:
    """Whether each of the first ``size`` bytes of ``buffer`` (UTF-8 text, then zero padding) is
    (part of) a whitespace character."""
    padded = np.frombuffer(buffer, dtype=np.uint8)
    data = padded[:size]
    space = _IS_SPACE_BYTE[data]
    if not ascii:
        lead = np.flatnonzero((data >= 0xC2) & (data <= 0xE3))  # lead bytes of wide spaces
        for width, spellings in _WIDE_SPACES.items():
            spelled = np.zeros(len(lead), dtype=np.int64)
            for i in range(width):
                spelled = spelled << 8 | padded[lead + i]
            found = lead[np.isin(spelled, spellings)]
            space[found[:, None] + np.arange(width)] = True
    return space


def _keys(words: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
    """The key of each unit: ``k1`` holds its first 8 bytes, ``k2`` the next 7 and its length.

    ``words`` is the byte buffer read as little-endian ``uint64``, padded by two words, so a
    unit's bytes are the two or three words from ``starts // 8`` shifted by ``starts % 8`` bytes.
    """
    word = starts >> 3
    shift = ((starts & 7) << 3).astype(np.uint64)
    w0, w1, w2 = words[word], words[word + 1], words[word + 2]
    back = _SIXTY_THREE - shift  # a shift by 64 - shift in two steps, as shifting by 64 is not 0
    k1 = ((w0 >> shift) | ((w1 << _ONE) << back)) & _LOW_BYTES[np.minimum(lengths, 8)]
    k2 = ((w1 >> shift) | ((w2 << _ONE) << back)) & _LOW_BYTES[np.clip(lengths - 8, 0, 7)]
    return k1, k2 | (np.minimum(lengths, 255).astype(np.uint64) << _LENGTH_SHIFT)


class UnitCache:
    """Token ids of units: a key table (or, for long units, a dict) gives an entry, and an entry
    a span of one flat array of ids.

    ``seeds`` (the vocabulary's tokens that are whole units, e.g. `` the``) stay when the
    learned entries are forgotten.
    """

    def __init__(self, seeds: Sequence[str], seed_ids: Sequence[int]) -> None:
        self._seeds = Units(seeds, one_each=True)
        self._seed_ids = np.asarray(seed_ids, dtype=np.int64)
        self.forget()

    def __len__(self) -> int:
        """Units learned, besides the seeds."""
        return len(self._table) + len(self._long) - len(self._seed_ids)

    def forget(self) -> None:
        """Drop every entry but the seeds (which bounds memory)."""
        # Room for three times as many learned units as seeds before the table first grows: a
        # first pass does not stop to rehash, and probes are shorter (GPT-2's: 12 MB).
        self._table = KeyTable(width=2, capacity=4 * len(self._seed_ids))
        self._long: dict[str, int] = {}
        self._ids = _Column(np.int64)
        self._id_bounds = _Column(np.int64)  # entry e's ids are ids[bounds[e]:bounds[e + 1]]
        self._id_bounds.extend(np.zeros(1, dtype=np.int64))
        seeds = np.arange(len(self._seed_ids))
        self.add(self._seeds, seeds, self._seed_ids, seeds + 1)

    def look_up(self, units: Units, index: np.ndarray | None = None) -> np.ndarray:
        """The entry of each unit (of those in ``index``, if given), ``EMPTY`` if unknown."""
        if index is None:
            index = np.arange(len(units))
        entries = self._table.get([units.k1[index], units.k2[index]])
        long = np.flatnonzero(units.lengths[index] > MAX_KEY_BYTES)
        for i, text in zip(long.tolist(), units.texts(index[long]), strict=True):
            entries[i] = self._long.get(text, EMPTY)
        return entries

    def add(self, units: Units, index: np.ndarray, ids: np.ndarray, id_ends: np.ndarray) -> None:
        """Cache distinct units: unit ``index[i]`` has ids ``ids[id_ends[i - 1]:id_ends[i]]``.

        A unit that is cached already keeps its entry (a new unit such as `` cats`` is also its
        own pre-token, cached while the unit was being learned).
        """
        entries = np.arange(len(index)) + len(self._id_bounds) - 1
        is_long = units.lengths[index] > MAX_KEY_BYTES
        fresh = ~is_long & (self.look_up(units, index) == EMPTY)
        self._table.add([units.k1[index[fresh]], units.k2[index[fresh]]], entries[fresh])
        self._long.update(zip(units.texts(index[is_long]), entries[is_long].tolist(), strict=True))
        self._id_bounds.extend(id_ends + len(self._ids))
        self._ids.extend(ids)

    def ids(self, entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids of the units with these ``entries``, one after another, and where each unit's
        ids end in them (``(units,)``)."""
        bounds = self._id_bounds.values
        last = bounds[entries + 1]
        counts = last - bounds[entries]
        ends = np.cumsum(counts)
        # Position k of the result comes from ids[last[u] - (ends[u] - k)], u the unit of k.
        offsets = np.repeat(last - ends, counts)
        return self._ids.values[offsets + np.arange(len(offsets))], ends


class _Column:
    """A one-dimensional numpy array that grows in place (doubling its room), for appending."""

    def __init__(self, dtype: type) -> None:
        self._data = np.empty(1024, dtype=dtype)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def values(self) -> np.ndarray:
        return self._data[: self._size]

    def extend(self, values: np.ndarray) -> None:
        end = self._size + len(values)
        if end > len(self._data):
            grown = np.empty(max(end, 2 * len(self._data)), dtype=self._data.dtype)
            grown[: self._size] = self.values
            self._data = grown
        self._data[self._size : end] = values
        self._size = end
