"""A hash table that numpy searches for a whole array of keys at once.

Encoding looks up tens of thousands of keys per call (a text's units, the pairs of the words being
merged); a Python dict costs an object and a call per key, a binary search over sorted keys a
dozen cache lines per key. Here a key is one or more unsigned 64-bit words and a lookup is a
handful of numpy operations over all the keys, however many there are.
"""

from collections.abc import Sequence

import numpy as np

EMPTY = -1
"""The value of an empty slot, and what :meth:`KeyTable.get` gives for a missing key."""

Keys = Sequence[np.ndarray]
"""Keys of ``width`` words: ``width`` ``uint64`` arrays of the same length, word by word."""
_MIX = np.uint64(0xC2B2AE3D27D4EB4F)  # folds further words into the first


def mix(keys: Keys) -> np.ndarray:
    """One ``uint64`` word per key, the same for equal keys: what the table hashes, and a sort
    key that brings equal keys together (with different keys that mix alike between them)."""
    mixed = keys[0]
    for key in keys[1:]:
        mixed = mixed ^ (key * _MIX)
    return mixed


class KeyTable:
    """Maps keys of ``width`` 64-bit words to non-negative ``int64`` values.

    Open addressing with linear probing; the table doubles before more than ``max_load`` of its
    slots are full, so a present key takes one or two probes. Keys are only added, never removed
    (empty it by making another).
    """

    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio: spreads nearby keys

    def __init__(self, width: int, capacity: int = 0, max_load: float = 0.5) -> None:
        """An empty table with room for ``capacity`` keys before it first grows."""
        self.width, self.max_load = width, max_load
        self._allocate(capacity)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def get(self, keys: Keys) -> np.ndarray:
        """The value of each key, or ``EMPTY``."""
        slot = self._slot(keys)
        values = self._values[slot]
        probing = np.flatnonzero(self._elsewhere(slot, keys, values))
        while len(probing):
            slot[probing] = (slot[probing] + 1) & self._mask
            values[probing] = found = self._values[slot[probing]]
            probing = probing[self._elsewhere(slot[probing], [k[probing] for k in keys], found)]
        return values

    def add(self, keys: Keys, values: np.ndarray) -> None:
        """Add distinct keys that are not in the table yet, with their values (``>= 0``)."""
        if self.size + len(values) > self.max_load * len(self._values):
            self._grow(self.size + len(values))
        todo, slot = np.arange(len(values)), self._slot(keys)
        while len(todo):  # each round fills each wanted empty slot with one of its keys
            free = self._values[slot] == EMPTY
            slots, first = np.unique(slot[free], return_index=True)
            placed = todo[free][first]
            for table, key in zip(self._keys, keys, strict=True):
                table[slots] = key[placed]
            self._values[slots] = values[placed]
            waiting = np.ones(len(todo), dtype=bool)
            waiting[np.flatnonzero(free)[first]] = False
            todo, slot = todo[waiting], (slot[waiting] + 1) & self._mask
        self.size += len(values)

    def _elsewhere(self, slot: np.ndarray, keys: Keys, values: np.ndarray) -> np.ndarray:
        """Whether ``slot`` (holding ``values``) holds another key than ``keys``, so the search
        goes on."""
        other = self._keys[0][slot] != keys[0]
        for table, key in zip(self._keys[1:], keys[1:], strict=True):
            other |= table[slot] != key
        return other & (values != EMPTY)

    def _slot(self, keys: Keys) -> np.ndarray:
        return ((mix(keys) * self._MULTIPLIER) >> self._shift).astype(np.int64)

    def _allocate(self, capacity: int) -> None:
        bits = max(4, int(np.ceil(np.log2(max(capacity, 1) / self.max_load))))
        self._shift, self._mask = np.uint64(64 - bits), (1 << bits) - 1
        self._keys = [np.zeros(1 << bits, dtype=np.uint64) for _ in range(self.width)]
        self._values = np.full(1 << bits, EMPTY, dtype=np.int64)

    def _grow(self, capacity: int) -> None:
        held = np.flatnonzero(self._values != EMPTY)
        keys, values = [table[held] for table in self._keys], self._values[held]
        self._allocate(max(capacity, 2 * self.size))
        self.size = 0
        self.add(keys, values)
