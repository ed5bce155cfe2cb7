"""Encoding ordinary text (no special tokens) fast: cached units, new ones learned in batches.

Natural text repeats a small set of *units* (a whitespace run and the word after it, see
:mod:`.units`), so the ids of each unit are cached, starting with the vocabulary's tokens that
are whole units (`` the``, `` said``). Input over ``SHORT_CHARS`` (a file's chunk, thousands of
documents) is cut into units and looked up by a few numpy operations over all of its units
(:class:`.units.UnitCache`), and the units it brings for the first time are learned together,
with a constant number of Python steps rather than several per unit:

1. they are joined into one string and cut into GPT-2 pre-tokens by a single regex call (unit
   boundaries are pre-token boundaries, so joining them changes nothing), the ASCII ones apart
   with the faster ASCII pattern;
2. a pre-token is a unit too: the cache knows most of them (whole tokens from the start), and
   the others replay the merges together (:class:`.bpe.BatchMerger`) and join the cache;
3. the ids are cut back into units by the running lengths of pre-tokens and units.

Shorter input (a prompt, one document) would pay more for those hundred numpy calls than for its
units, so it is looked up unit by unit in a dict, which learns its new units one by one.
"""

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain

import numpy as np

from lmlab.tokenizer.bpe import BatchMerger, Pair
from lmlab.tokenizer.keytable import EMPTY
from lmlab.tokenizer.pretokenize import UNIT_RE, cut_text, is_one_pretoken, pretokens
from lmlab.tokenizer.units import UnitCache, Units

CACHE_SIZE = 1 << 18
"""Units learned (besides the vocabulary's) past which a cache is emptied before the next input:
memory stays bounded by this and the units of one input."""
SHORT_CHARS = 1 << 15
"""Texts up to this size together are looked up unit by unit in a dict (see ``_encode_short``)."""
BATCH_CHARS = 1 << 20
"""Text encoded in one batch of numpy operations: enough that their overhead is nothing, small
enough that their arrays (8 bytes per unit each) are reused from the heap, not mapped afresh
(measured: docs/benchmarks.md, "Encoding")."""


class UnitEncoder:
    """Token ids of text without special tokens, through a cache of units and pre-tokens."""

    def __init__(self, token_ids: dict[bytes, int], ranked: dict[Pair, tuple[int, int]]) -> None:
        self.merger = BatchMerger([token_ids[bytes([b])] for b in range(256)], ranked)
        whole = _whole_pretokens(token_ids)
        self.units = UnitCache(list(whole), list(whole.values()))
        self.whole = {text: (idx,) for text, idx in whole.items()}
        self.short_units = dict(self.whole)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of ``texts`` (which must hold no special tokens) one after another, and where
        each text's ids end in them (``(texts,)``).

        Taking many texts at once (the documents between special tokens) lets the new units of
        all of them be learned together, in batches of ``BATCH_CHARS``.
        """
        chars = sum(map(len, texts))
        if chars <= SHORT_CHARS:
            return self._encode_short(texts)
        if chars <= BATCH_CHARS:
            return self._encode_batch(texts)
        cut = [cut_text(text, BATCH_CHARS) for text in texts]
        batches: list[list[str]] = [[]]
        chars = 0
        for piece in chain.from_iterable(cut):
            if chars + len(piece) > BATCH_CHARS and batches[-1]:
                batches.append([])
                chars = 0
            batches[-1].append(piece)
            chars += len(piece)
        ids, piece_ends = zip(*map(self._encode_batch, batches), strict=True)
        offsets = np.cumsum([0, *map(len, ids)])
        piece_ends = np.concatenate([ends + offsets[i] for i, ends in enumerate(piece_ends)])
        return np.concatenate(ids), piece_ends[np.cumsum(list(map(len, cut))) - 1]

    def _encode_short(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode short texts unit by unit, through a dict of units (and pre-tokens) by text.

        A batch costs a hundred numpy calls however short its text is, far more than a
        sentence's few dict lookups (measured: docs/benchmarks.md, "Encoding"). The dict starts
        with the vocabulary's whole tokens.
        """
        if len(self.short_units) > CACHE_SIZE + len(self.whole):
            self.short_units = dict(self.whole)
        units = [UNIT_RE.findall(text) for text in texts]
        new = set(chain.from_iterable(units)).difference(self.short_units)
        if new:
            self._learn_short(new)
        get = self.short_units.__getitem__
        ids = [list(chain.from_iterable(map(get, text_units))) for text_units in units]
        ends = np.cumsum(np.fromiter(map(len, ids), np.int64, len(ids)))
        return np.fromiter(chain.from_iterable(ids), np.int64, ends[-1] if len(ends) else 0), ends

    def _learn_short(self, new: set[str]) -> None:
        """Put the ids of the ``new`` units in the dict of short texts: each unit is cut into
        pre-tokens on its own, and the pre-tokens the dict lacks replay the merges."""
        pieces = {unit: pretokens(unit) for unit in new}
        unknown = list(set(chain.from_iterable(pieces.values())).difference(self.short_units))
        merged = self.merger([piece.encode("utf-8") for piece in unknown])
        self.short_units.update(zip(unknown, map(tuple, merged), strict=True))
        get = self.short_units.__getitem__
        for unit, unit_pieces in pieces.items():
            self.short_units[unit] = tuple(chain.from_iterable(map(get, unit_pieces)))

    def _encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        units = Units(texts)
        ids, unit_id_ends = self._unit_ids(units)
        return ids, np.concatenate(([0], unit_id_ends))[units.text_unit_ends]

    def _unit_ids(self, units: Units) -> tuple[np.ndarray, np.ndarray]:
        """The ids of ``units`` one after another, and where each unit's ids end in them."""
        if len(self.units) > CACHE_SIZE:
            self.units.forget()
        with cycle_collector_paused():
            entries = self._entries(units, self._split_and_merge)
        return self.units.ids(entries)

    def _entries(self, units: Units, learn) -> np.ndarray:
        """The cache entry of each of ``units``; ``learn(units, new)`` gives the new ones' ids."""
        entries = self.units.look_up(units)
        missing = np.flatnonzero(entries == EMPTY)
        if len(missing):
            self.units.add(units, *learn(units, units.distinct(missing)))
            entries[missing] = self.units.look_up(units, missing)
        return entries

    def _split_and_merge(self, units: Units, new: np.ndarray):
        """The ``new`` units (reordered), their ids, and where each unit's ids end in them.

        The units are cut into pre-tokens: all but those that must stand alone (see
        :meth:`.Units.stand_alone`) joined into one text, the ASCII ones apart as they take the
        faster pattern. A pre-token is a unit too, so the cache has the ids of most of them
        (whole tokens from the start); the others replay the merges and are cached as well.
        """
        alone, ascii = units.stand_alone(new), units.is_ascii(new)
        groups = [new[~alone & ascii], new[~alone & ~ascii], new[alone]]
        texts = [units.joined(groups[0]), units.joined(groups[1]), *units.texts(groups[2])]
        pieces = Units(list(chain.from_iterable(map(pretokens, texts))), one_each=True)
        ids, piece_id_ends = self.units.ids(self._entries(pieces, self._merge))
        # Unit i ends with pre-token cut[i] - 1, so its ids end where that pre-token's ids end.
        ordered = np.concatenate(groups)
        cut = np.searchsorted(np.cumsum(pieces.lengths), np.cumsum(units.lengths[ordered])) + 1
        return ordered, ids, piece_id_ends[cut - 1]

    def _merge(self, pieces: Units, new: np.ndarray):
        """The ``new`` pre-tokens, their ids after replaying the merges, and where each one's ids
        end in them."""
        return new, *self.merger.flat(pieces.bytes(new))


def _whole_pretokens(token_ids: dict[bytes, int]) -> dict[str, int]:
    """The id of each token that is a single pre-token (so a single unit too), by its text.

    A pre-token (or a whole unit) that is itself a token encodes as that token, with no merges
    (as in tiktoken), and most of natural text is such. Left out: tokens that are not UTF-8 text
    (parts of a character), and tokens that the regex would cut in two, such as a special token
    kept in the vocabulary (``<|endoftext|>`` in GPT-2's), which ordinary text never encodes as.
    """
    whole = {}
    for token, idx in token_ids.items():
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if is_one_pretoken(text):
            whole[text] = idx
    return whole


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    """Keep Python's cycle collector from running while a text is encoded or a tokenizer built
    (also a decorator).

    Both make tens of thousands of lists, tuples and strings, none of them in a reference
    cycle, so reference counting frees them all; but every few hundred of them start a
    collection, and now and then a full one walks every object of the process (a fresh
    tokenizer's merge table alone holds 100,000 tuples), which slows a first pass over varied
    text and the loading of a tokenizer (measured: docs/benchmarks.md, "Encoding").
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
