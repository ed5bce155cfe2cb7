"""Encoding ordinary text (no special tokens) fast: cached units, new ones learned in batches.

Natural text repeats a small set of *units* (a whitespace run and the word after it, see
:data:`.pretokenize.UNIT_RE`), so the ids of each unit are cached and text whose units are known
costs one dictionary lookup per unit, all in C. The units a text brings for the first time are
learned together, with a constant number of Python steps rather than several per unit:

1. the new units are joined into one string and cut into GPT-2 pre-tokens by a single regex call
   (unit boundaries are pre-token boundaries, so joining them changes nothing);
2. each new pre-token that is itself a token is that token (as in tiktoken; most pre-tokens of
   natural text are), and the others replay the merges together (:class:`.bpe.BatchMerger`);
3. the ids are cut back into units by the running lengths of pre-tokens and units.
"""

import re
from itertools import chain

import numpy as np

from lmlab.tokenizer.bpe import BatchMerger, Pair, split_at
from lmlab.tokenizer.pretokenize import PRETOKEN_RE, UNIT_RE, WHITESPACE

CACHE_SIZE = 1 << 18
"""Most units (and most pre-tokens) whose ids are kept; a full cache is emptied."""

_STARTS_WITH_SPACE = re.compile(f"[{WHITESPACE}]")
_ALL_SPACE = re.compile(f"[{WHITESPACE}]+")


class UnitEncoder:
    """Token ids of text without special tokens, through a cache of units and pre-tokens."""

    def __init__(self, token_ids: dict[bytes, int], ranked: dict[Pair, tuple[int, int]]) -> None:
        self.token_ids = token_ids
        self.merger = BatchMerger([token_ids[bytes([b])] for b in range(256)], ranked)
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
        new = _to_learn(self.units, set(chain.from_iterable(unit_lists)))
        ends = {units[i] for units in unit_lists if units for i in (0, -1)}
        self._learn_units(new, ends.intersection(new))

    def _learn_units(self, new: set[str], text_ends: set[str]) -> None:
        """Cache the ids of the ``new`` units; ``text_ends`` are those that began or ended a text.

        Units join safely when each ends in non-space and the next starts with a space. Only a
        text's first unit may start otherwise and only its last may be all space, so those are
        the only ones that may need to be pre-tokenized on their own.
        """
        alone = [unit for unit in text_ends if _stands_alone(unit)]
        joined = list(new.difference(alone))
        units = joined + alone
        pieces = PRETOKEN_RE.findall("".join(joined))
        pieces += chain.from_iterable(map(PRETOKEN_RE.findall, alone))
        piece_ids = self._piece_ids(pieces)
        # Unit i ends with pre-token cut[i] - 1, so its ids end where that pre-token's ids end.
        piece_ends = np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)))
        unit_ends = np.cumsum(np.fromiter(map(len, units), np.int64, len(units)))
        cut = np.searchsorted(piece_ends, unit_ends) + 1
        id_ends = np.cumsum(np.fromiter(map(len, piece_ids), np.int64, len(piece_ids)))
        unit_ids = split_at(tuple(chain.from_iterable(piece_ids)), id_ends[cut - 1].tolist())
        self.units.update(zip(units, unit_ids, strict=True))

    def _piece_ids(self, pieces: list[str]) -> list[tuple[int, ...]]:
        """The ids of each pre-token, encoding (and caching) the ones not seen before."""
        new = list(_to_learn(self.pieces, set(pieces)))
        data = [piece.encode("utf-8") for piece in new]
        wholes = list(map(self.token_ids.get, data))
        ids = [(whole,) for whole in wholes]
        split = [i for i, whole in enumerate(wholes) if whole is None]
        for i, merged in zip(split, self.merger([data[i] for i in split]), strict=True):
            ids[i] = tuple(merged)
        self.pieces.update(zip(new, ids, strict=True))
        return list(map(self.pieces.__getitem__, pieces))


def _stands_alone(unit: str) -> bool:
    """Whether ``unit`` starts with non-space or is all space (see ``_learn_units``)."""
    return not _STARTS_WITH_SPACE.match(unit) or _ALL_SPACE.fullmatch(unit) is not None


def _to_learn(cache: dict, distinct: set) -> set:
    """The keys of ``distinct`` that ``cache`` lacks; all of them, after emptying the cache, when
    adding them would take it past ``CACHE_SIZE`` (which bounds its memory)."""
    new = distinct.difference(cache)
    if len(cache) + len(new) > CACHE_SIZE:
        cache.clear()
        return distinct
    return new
