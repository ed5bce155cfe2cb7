"""The two primitives of byte-pair encoding: counting pairs and replaying merges.

A token sequence is a list of integer ids; a *pair* is two adjacent ids. Training counts pairs and
merges the most frequent one into a new id; encoding replays the learned merges in rank order.
"""

from collections.abc import Sequence
from itertools import chain, pairwise, repeat

import numpy as np

from lmlab.tokenizer.keytable import KeyTable

Pair = tuple[int, int]


def get_stats(ids: Sequence[int], counts: dict[Pair, int] | None = None, weight: int = 1):
    """Count each adjacent pair in ``ids``, adding ``weight`` per occurrence into ``counts``.

    ``weight`` lets training count a pre-token once and credit it with how often it occurs.

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    >>> get_stats([1, 2], {(1, 2): 5}, weight=3)
    {(1, 2): 8}
    """
    counts = {} if counts is None else counts
    for pair in pairwise(ids):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def apply_merges(ids: list[int], ranked: dict[Pair, tuple[int, int]]) -> list[int]:
    """Replay learned merges on ``ids``: merge the lowest-ranked adjacent pair until none is left.

    ``ranked`` maps a pair to ``(rank, merged id)``. Ties (the same pair twice) go left first, as
    in tiktoken. The rank of every adjacent pair is kept in a list, and a merge recomputes only
    the two pairs next to it, so ``min`` and ``index`` (in C) do the searching.

    >>> ranked = {(104, 105): (0, 256), (256, 104): (1, 257)}
    >>> apply_merges([104, 105, 104, 105], ranked), apply_merges([104, 105, 104], ranked)
    ([256, 256], [257])
    """
    ids = list(ids)
    get = ranked.get
    ranks = list(map(get, pairwise(ids), repeat(_NO_MERGE)))
    while ranks:
        best = min(ranks)
        if best is _NO_MERGE:
            break
        i = ranks.index(best)
        ids[i : i + 2] = (best[1],)
        del ranks[i]
        if i > 0:
            ranks[i - 1] = get((ids[i - 1], ids[i]), _NO_MERGE)
        if i < len(ranks):
            ranks[i] = get((ids[i], ids[i + 1]), _NO_MERGE)
    return ids


_NO_MERGE = (float("inf"), -1)


class BatchMerger:
    """Replays merges on many words at once, each step in numpy over all of them.

    Encoding a corpus meets thousands of words that are not whole tokens; replaying their merges
    one word at a time in Python costs microseconds per merge. Here every round finds, for each
    word, its lowest-ranked pair and merges all of that pair's occurrences in the word together
    (left first where they overlap, as in ``aaa``), so the Python loop runs once per round, not
    once per merge.

    That equals :func:`apply_merges` when a merge's product only takes part in later merges, which
    holds for merges learned by BPE (GPT-2's included): merging one occurrence of the best pair
    then never creates a better pair, so the other occurrences are merged next in any case.
    ``batched`` says whether there are merges and they have this property; words replay one at a
    time when not, and words longer than ``max_batch_length`` bytes always do (many rounds).
    """

    max_batch_length = 64
    min_batch_size = 16
    """Fewer words replay one at a time: numpy's overhead per round would outweigh the batch."""

    def __init__(self, byte_ids: Sequence[int], ranked: dict[Pair, tuple[int, int]]) -> None:
        self.byte_ids = np.asarray(byte_ids, dtype=np.int64)
        self.ranked = ranked
        pairs = np.fromiter(chain.from_iterable(ranked), np.int64, 2 * len(ranked))
        self.pairs = pairs.reshape(-1, 2)
        """The merged pairs (``(merges, 2)``) in rank order; ``products`` the id each makes."""
        values = np.fromiter(chain.from_iterable(ranked.values()), np.int64, 2 * len(ranked))
        ranks, self.products = values[0::2], values[1::2]
        self.table = PairTable(self.pairs, ranks, self.products)
        self.batched = len(ranks) > 0 and _products_merge_later(self.pairs, ranks, self.products)

    def __call__(self, words: Sequence[bytes]) -> list[list[int]]:
        """The ids of each word (a non-empty byte string) after replaying the merges."""
        ids, ends = self.flat(words)
        return split_at(ids.tolist(), ends.tolist())

    def flat(self, words: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of all ``words`` one after another, and where each word's ids end in them
        (``(words,)``): what a numpy caller wants, without a list per word."""
        limit = self.max_batch_length if self.batched and len(words) >= self.min_batch_size else 0
        if all(len(word) <= limit for word in words):
            return self._merge_batch(words)
        batch = [i for i, word in enumerate(words) if len(word) <= limit]
        ids, ends = self._merge_batch([words[i] for i in batch])
        batched = dict(zip(batch, split_at(ids.tolist(), ends.tolist()), strict=True))
        merged = [batched[i] if i in batched else self._merge_one(w) for i, w in enumerate(words)]
        ends = np.cumsum(np.fromiter(map(len, merged), np.int64, len(merged)))
        return np.fromiter(chain.from_iterable(merged), np.int64), ends

    def _merge_one(self, word: bytes) -> list[int]:
        return apply_merges(self.byte_ids[list(word)].tolist(), self.ranked)

    def _merge_batch(self, words: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """All words side by side in one array; ``rank[i]`` is the rank of the pair at ``i``."""
        lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        ids = self.byte_ids[np.frombuffer(b"".join(words), dtype=np.uint8)]
        owner = np.repeat(np.arange(len(words)), lengths)
        rank, product = self._look_up(ids, owner, np.arange(len(ids) - 1))
        while len(rank):
            starts = np.concatenate(([0], np.cumsum(lengths[:-1])))
            best = np.minimum.reduceat(np.append(rank, _NO_RANK), starts)  # per word
            best[best == _NO_RANK] = -1  # a word with nothing left to merge matches no pair
            chosen = rank == best[owner[:-1]]
            if not chosen.any():
                break
            where = np.flatnonzero(chosen)
            if (np.diff(where) == 1).any():
                # Overlapping occurrences (a run of the same pair `aa`) merge every other one.
                position = np.arange(len(chosen))
                run_start = chosen & ~np.concatenate(([False], chosen[:-1]))
                first = np.maximum.accumulate(np.where(run_start, position, 0))
                where = np.flatnonzero(chosen & ((position - first) % 2 == 0))
            ids[where] = product[where]
            lengths -= np.bincount(owner[where], minlength=len(words))
            keep = np.ones(len(ids), dtype=bool)
            keep[where + 1] = False  # the right-hand token of each merged pair goes,
            ids, owner = ids[keep], owner[keep]
            rank, product = rank[keep[1:]], product[keep[1:]]  # and the pair that ends at it
            merged = where - np.arange(len(where))  # where the merged tokens now are
            stale = np.concatenate((merged - 1, merged))
            stale = stale[(stale >= 0) & (stale < len(rank))]
            rank[stale], product[stale] = self._look_up(ids, owner, stale)
        return ids, np.cumsum(lengths)

    def _look_up(self, ids: np.ndarray, owner: np.ndarray, at: np.ndarray):
        """Rank and product of the pairs ``(ids[at], ids[at + 1])``; none across two words."""
        rank, product = self.table.look_up(ids[at], ids[at + 1])
        return np.where(owner[at] == owner[at + 1], rank, _NO_RANK), product


_NO_RANK = np.iinfo(np.int64).max


def _products_merge_later(pairs: np.ndarray, ranks: np.ndarray, products: np.ndarray) -> bool:
    """Whether every merge that uses a token ranks after every merge that makes it."""
    size = int(max(pairs.max(), products.max())) + 1
    made_last = np.full(size, -1, dtype=np.int64)
    np.maximum.at(made_last, products, ranks)
    used_first = np.full(size, _NO_RANK, dtype=np.int64)
    np.minimum.at(used_first, pairs[:, 0], ranks)
    np.minimum.at(used_first, pairs[:, 1], ranks)
    return bool(np.all(used_first > made_last))


class PairTable:
    """The merges as a :class:`.KeyTable`: rank and product of a whole array of pairs at once.

    Replaying merges looks up tens of thousands of pairs; a binary search over GPT-2's 50,000
    sorted merges touches a dozen or more cache lines per pair, the hash table (at most a
    quarter full, as this one is small) one or two.
    """

    def __init__(self, pairs: np.ndarray, ranks: np.ndarray, products: np.ndarray) -> None:
        self.table = KeyTable(width=1, capacity=len(pairs), max_load=0.25)
        self.table.add(self._key(pairs[:, 0], pairs[:, 1]), np.arange(len(pairs)))
        self.ranks = np.append(ranks, _NO_RANK)  # a missing pair's index is -1: the last entry
        self.products = np.append(products, 0)

    def look_up(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rank and product of each pair ``(left[i], right[i])``; rank ``_NO_RANK`` if none."""
        index = self.table.get(self._key(left, right))
        return self.ranks[index], self.products[index]

    @staticmethod
    def _key(left: np.ndarray, right: np.ndarray) -> list[np.ndarray]:
        return [(left << 32 | right).astype(np.uint64)]


def split_at(flat: Sequence, ends: list[int]) -> list:
    """``flat`` cut into consecutive pieces ending at ``ends`` (slices, made in C).

    >>> split_at([1, 2, 3, 4, 5], [2, 2, 5])
    [[1, 2], [], [3, 4, 5]]
    """
    return list(map(flat.__getitem__, map(slice, [0, *ends[:-1]], ends)))
