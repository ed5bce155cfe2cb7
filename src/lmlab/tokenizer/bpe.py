"""The two primitives of byte-pair encoding: counting pairs and replaying merges.

A token sequence is a list of integer ids; a *pair* is two adjacent ids. Training counts pairs and
merges the most frequent one into a new id; encoding replays the learned merges in rank order.
"""

from collections.abc import Sequence
from itertools import pairwise, repeat

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
