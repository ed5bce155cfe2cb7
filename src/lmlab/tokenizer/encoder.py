"""Encoding ordinary text (no special tokens) fast: cached units, new ones learned in batches.

Natural text repeats a small set of *units* (a whitespace run and the word after it, see
:mod:`.units`), so the ids of each unit are cached, seeded with the vocabulary's tokens that are
whole units (`` the``, `` said``), and text whose units are known costs a few numpy operations
over all of its units. The units a batch of texts brings for the first time are learned together,
with a constant number of Python steps rather than several per unit:

1. they are joined into one string and cut into GPT-2 pre-tokens by a single regex call (unit
   boundaries are pre-token boundaries, so joining them changes nothing), the ASCII ones apart
   with the faster ASCII pattern;
2. each new pre-token that is itself a token is that token, and the others replay the merges
   together (:class:`.bpe.BatchMerger`);
3. the ids are cut back into units by the running lengths of pre-tokens and units.
"""

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain

import numpy as np

from lmlab.tokenizer.bpe import BatchMerger, Pair
from lmlab.tokenizer.keytable import EMPTY
from lmlab.tokenizer.pretokenize import cut_text, is_one_pretoken, pretokens
from lmlab.tokenizer.units import UnitCache, Units

CACHE_SIZE = 1 << 18
"""Most units learned (besides the vocabulary's) whose ids are kept; a full cache is emptied."""
BATCH_CHARS = 1 << 20
"""Text encoded in one batch of numpy operations: enough that their overhead is nothing, small
enough that their arrays (8 bytes per unit each) are reused from the heap, not mapped afresh
(encoding 36 MB as one batch was a third slower than in slices)."""


class UnitEncoder:
    """Token ids of text without special tokens, through a cache of units and pre-tokens."""

    def __init__(self, token_ids: dict[bytes, int], ranked: dict[Pair, tuple[int, int]]) -> None:
        self.merger = BatchMerger([token_ids[bytes([b])] for b in range(256)], ranked)
        self.whole_tokens = _whole_pretokens(token_ids)
        # A single pre-token is a single unit too, so each seeds the unit cache as well.
        seed_ids = [idx for idx, in self.whole_tokens.values()]
        self.units = UnitCache(list(self.whole_tokens), seed_ids)
        self.pieces = dict(self.whole_tokens)

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of ``texts`` (which must hold no special tokens) one after another, and where
        each text's ids end in them (``(texts,)``).

        Taking many texts at once (the documents between special tokens) lets the new units of
        all of them be learned together, in batches of ``BATCH_CHARS``.
        """
        if sum(map(len, texts)) <= BATCH_CHARS:
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

    def _encode_batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        units = Units(texts)

        with _cycle_collector_paused():
            entries = self._entries(units)
        ids, unit_id_ends = self.units.ids(entries)
        return ids, np.concatenate(([0], unit_id_ends))[units.text_unit_ends]

    def _entries(self, units: Units) -> np.ndarray:
        """The cache entry of each unit, learning the units the cache lacks."""
        entries = self.units.look_up(units)
        missing = np.flatnonzero(entries == EMPTY)
        if len(missing) == 0:
            return entries
        new = units.distinct(missing)
        if len(self.units) + len(new) > CACHE_SIZE and len(self.units):
            self.units.forget()  # bounds memory; the units of this batch are learned again
            self.pieces = dict(self.whole_tokens)
            return self._entries(units)
        self._learn(units, new)
        entries[missing] = self.units.look_up(units, missing)
        return entries

    def _learn(self, units: Units, new: np.ndarray) -> None:
        """Cache the ids of the ``new`` units (distinct, none in the cache).

        All but the units that must stand alone (see :meth:`.Units.stand_alone`) are joined, the
        ASCII ones apart as they take the faster pattern.
        """
        alone = units.stand_alone(new)
        texts = units.texts(new)
        ascii = np.fromiter(map(str.isascii, texts), bool, len(texts))
        groups = [np.flatnonzero(~alone & ascii), np.flatnonzero(~alone & ~ascii)]
        order = np.concatenate([*groups, np.flatnonzero(alone)])
        texts = [texts[i] for i in order.tolist()]
        joined = len(groups[0]) + len(groups[1])
        pieces = pretokens("".join(texts[: len(groups[0])]))
        pieces += pretokens("".join(texts[len(groups[0]) : joined]))
        pieces += chain.from_iterable(map(pretokens, texts[joined:]))
        piece_ids = self._piece_ids(pieces)
        # Unit i ends with pre-token cut[i] - 1, so its ids end where that pre-token's ids end.
        piece_ends = np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)))
        unit_ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)))
        cut = np.searchsorted(piece_ends, unit_ends) + 1
        id_ends = np.cumsum(np.fromiter(map(len, piece_ids), np.int64, len(piece_ids)))
        ids = np.fromiter(chain.from_iterable(piece_ids), np.int64, id_ends[-1])
        self.units.add(units, new[order], ids, id_ends[cut - 1])

    def _piece_ids(self, pieces: list[str]) -> list[tuple[int, ...]]:
        """The ids of each pre-token, encoding (and caching) the ones not seen before."""
        split = list(set(pieces).difference(self.pieces))
        merged = self.merger([piece.encode("utf-8") for piece in split])
        self.pieces.update(zip(split, map(tuple, merged), strict=True))
        return list(map(self.pieces.__getitem__, pieces))


def _whole_pretokens(token_ids: dict[bytes, int]) -> dict[str, tuple[int]]:
    """The id (as a 1-tuple, the form the caches hold) of each token that is a single pre-token,
    by its text.

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
            whole[text] = (idx,)
    return whole


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Keep Python's cycle collector from running while a text is encoded.

    Encoding makes tens of thousands of lists, tuples and strings, none of them in a reference
    cycle, so reference counting frees them all; but every few hundred of them start a
    collection, and now and then a full one walks every object of the process (a fresh
    tokenizer's merge table alone holds 100,000 tuples). That cost 5-10% of a first pass over
    varied text in interleaved runs, and up to a quarter right after a tokenizer was built.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
