"""Encoding ordinary text (no special tokens) fast: cached units, new ones learned in batches.

Natural text repeats a small set of *units* (a whitespace run and the word after it, see
:data:`.pretokenize.UNIT_RE`), so the ids of each unit are cached and text whose units are known
costs one dictionary lookup per unit, all in C. The units a text brings for the first time are
learned together, with a constant number of Python steps rather than several per unit:

1. a new unit that is itself a token (`` the``, `` said``: two in five of them in web text) is
   that token, as in tiktoken, found by one set intersection with the vocabulary;
2. the others are joined into one string and cut into GPT-2 pre-tokens by a single regex call
   (unit boundaries are pre-token boundaries, so joining them changes nothing), the ASCII ones
   apart with the faster ASCII pattern;
3. each new pre-token that is itself a token is that token, and the others replay the merges
   together (:class:`.bpe.BatchMerger`);
4. the ids are cut back into units by the running lengths of pre-tokens and units.
"""

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain

import numpy as np

from lmlab.tokenizer.bpe import BatchMerger, Pair, split_at
from lmlab.tokenizer.pretokenize import UNIT_RE, WHITESPACE, is_one_pretoken, pretokens

CACHE_SIZE = 1 << 18
"""Most units (and most pre-tokens) whose ids are kept; a full cache is emptied."""

_STARTS_WITH_SPACE = re.compile(f"[{WHITESPACE}]")
_ALL_SPACE = re.compile(f"[{WHITESPACE}]+")


class UnitEncoder:
    """Token ids of text without special tokens, through a cache of units and pre-tokens."""

    def __init__(self, token_ids: dict[bytes, int], ranked: dict[Pair, tuple[int, int]]) -> None:
        self.merger = BatchMerger([token_ids[bytes([b])] for b in range(256)], ranked)
        self.whole_tokens = _whole_pretokens(token_ids)
        self.units: dict[str, tuple[int, ...]] = {}
        self.pieces: dict[str, tuple[int, ...]] = {}

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Ids of each of ``texts``, which must hold no special tokens.

        Taking many texts at once (the documents between special tokens) lets the new units of
        all of them be learned together, in one batch.
        """
        results: list = []
        pending: list[int] = []  # texts with new units; their results hold the units meanwhile
        get = self.units.__getitem__
        with _cycle_collector_paused():
            for text in texts:
                units = UNIT_RE.findall(text)
                try:
                    results.append(list(chain.from_iterable(map(get, units))))
                except KeyError:
                    pending.append(len(results))
                    results.append(units)
            if pending:
                self._learn([results[i] for i in pending])
                for i in pending:
                    results[i] = list(chain.from_iterable(map(get, results[i])))
        return results

    def _learn(self, unit_lists: list[list[str]]) -> None:
        """Cache the ids of the units of texts (each given as its list of units)."""
        new = self._cache_whole_tokens(self.units, set(chain.from_iterable(unit_lists)))
        ends = {units[i] for units in unit_lists if units for i in (0, -1)}
        self._learn_units(new, ends.intersection(new))

    def _learn_units(self, new: set[str], text_ends: set[str]) -> None:
        """Cache the ids of the ``new`` units; ``text_ends`` are those that began or ended a text.

        Units join safely when each ends in non-space and the next starts with a space. Only a
        text's first unit may start otherwise and only its last may be all space, so those are
        the only ones that may need to be pre-tokenized on their own.
        """
        alone = [unit for unit in text_ends if _stands_alone(unit)]
        joined = new.difference(alone)
        ascii_units = list(filter(str.isascii, joined))  # apart: they take the faster pattern
        other_units = list(joined.difference(ascii_units))
        units = ascii_units + other_units + alone
        pieces = pretokens("".join(ascii_units)) + pretokens("".join(other_units))
        pieces += chain.from_iterable(map(pretokens, alone))
        piece_ids = self._piece_ids(pieces)
        # Unit i ends with pre-token cut[i] - 1, so its ids end where that pre-token's ids end.
        piece_ends = np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)))
        unit_ends = np.cumsum(np.fromiter(map(len, units), np.int64, len(units)))
        cut = np.searchsorted(piece_ends, unit_ends) + 1
        id_ends = np.cumsum(np.fromiter(map(len, piece_ids), np.int64, len(piece_ids)))
        unit_ids = split_at(tuple(chain.from_iterable(piece_ids)), id_ends[cut - 1].tolist())
        self.units.update(zip(units, unit_ids, strict=True))

    def _cache_whole_tokens(self, cache: dict, distinct: set[str]) -> set[str]:
        """Of the ``distinct`` texts (units or pre-tokens), cache those that are whole tokens;
        return the others that ``cache`` lacks."""
        new = _to_learn(cache, distinct)
        whole = self.whole_tokens.keys() & new
        cache.update(zip(whole, map(self.whole_tokens.__getitem__, whole), strict=True))
        return new - whole

    def _piece_ids(self, pieces: list[str]) -> list[tuple[int, ...]]:
        """The ids of each pre-token, encoding (and caching) the ones not seen before."""
        split = list(self._cache_whole_tokens(self.pieces, set(pieces)))
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


def _stands_alone(unit: str) -> bool:
    """Whether ``unit`` starts with non-space or is all space (see ``_learn_units``)."""
    return not _STARTS_WITH_SPACE.match(unit) or _ALL_SPACE.fullmatch(unit) is not None


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


def _to_learn(cache: dict, distinct: set) -> set:
    """The keys of ``distinct`` that ``cache`` lacks; all of them, after emptying the cache, when
    adding them would take it past ``CACHE_SIZE`` (which bounds its memory)."""
    new = distinct.difference(cache)
    if len(cache) + len(new) > CACHE_SIZE:
        cache.clear()
        return distinct
    return new
