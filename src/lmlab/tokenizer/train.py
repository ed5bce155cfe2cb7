"""Byte-level BPE training: count pre-tokens in parallel, then merge with incremental pair counts.

Phase 1 reads the file in chunks cut at safe boundaries (see :mod:`.pretokenize`); workers turn each
chunk into a table ``pre-token -> count``, so memory is bounded by the chunk size and that table,
never by the file. Phase 2 works on the distinct pre-tokens only: it keeps the count of every
adjacent pair, an index ``pair -> words that contain it`` and a heap of candidate pairs. A merge
touches just the words holding the merged pair; heap entries that went stale are skipped on pop.
"""

import heapq
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from itertools import pairwise
from multiprocessing import Pool
from pathlib import Path

from tqdm import tqdm

from lmlab.errors import DataError, TokenizerError
from lmlab.progress import bar_disabled
from lmlab.tokenizer.bpe import Pair, get_stats
from lmlab.tokenizer.pretokenize import (
    RepeatCache,
    count_pretokens,
    find_chunk_boundaries,
    read_text,
    special_token_regex,
)

CHUNK_BYTES = 16 << 20
"""Largest piece of the file one worker holds in memory at a time."""

# Byte-wise inversion: a heap (smallest first) of inverted keys pops the lexicographically
# *greatest* byte string first, which is the tie-break the reference implementation uses.
_INVERT = bytes(range(255, -1, -1))


def _tie_key(token: bytes) -> str:
    """A string whose order is the reverse of ``token``'s byte order.

    Bytes are mirrored (``b -> 255 - b``) and a terminator above every byte is appended, so a
    proper prefix (smaller as bytes) sorts *after* its extensions.

    >>> sorted([b"a", b"ab", b"b"], key=_tie_key)
    [b'b', b'ab', b'a']
    """
    return token.translate(_INVERT).decode("latin-1") + "\u0100"


def train_bpe(
    input_path: str | Path,
    vocab_size: int,
    special_tokens: list[str] | None = None,
    *,
    num_workers: int | None = None,
    progress: bool = True,
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Train a byte-level BPE tokenizer on a UTF-8 text file.

    Returns ``(vocab, merges)``: ids are the special tokens first, then the 256 single bytes, then
    one id per merge in the order learned. Special tokens split the text and never take part in
    merges. Ties between equally frequent pairs go to the lexicographically greater pair.
    ``num_workers`` processes count pre-tokens (default: the CPU count); the result is the same for
    any value. ``progress`` shows bars on a terminal.
    """
    path = Path(input_path)
    specials = list(dict.fromkeys(special_tokens or []))
    _check_arguments(path, vocab_size, specials)
    counts = count_file_pretokens(path, specials, num_workers or os.cpu_count() or 1, progress)
    vocab: dict[int, bytes] = {i: tok.encode("utf-8") for i, tok in enumerate(specials)}
    vocab.update({len(specials) + b: bytes([b]) for b in range(256)})
    words = {word.encode("utf-8"): n for word, n in counts.items()}
    merges = learn_merges(words, vocab, vocab_size - len(vocab), progress)
    return vocab, merges


def _check_arguments(path: Path, vocab_size: int, specials: list[str]) -> None:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if any(not tok for tok in specials):
        raise TokenizerError("special tokens must be non-empty strings")
    if vocab_size < 256 + len(specials):
        raise TokenizerError(
            f"vocab_size {vocab_size} is smaller than 256 bytes + {len(specials)} special tokens"
        )


def count_file_pretokens(
    path: Path, special_tokens: list[str], num_workers: int, progress: bool = False
) -> Counter[str]:
    """Pre-token counts of the whole file, chunk by chunk, over ``num_workers`` processes."""
    size = path.stat().st_size
    num_chunks = -(-size // CHUNK_BYTES)
    num_chunks += -num_chunks % num_workers  # a multiple of the workers, to balance them
    bounds = find_chunk_boundaries(path, -(-size // num_chunks), special_tokens)
    tasks = [(path, start, end, special_tokens) for start, end in pairwise(bounds)]
    bar = tqdm(
        total=size, unit="B", unit_scale=True, desc="pre-tokenize", disable=bar_disabled(progress)
    )
    total: Counter[str] = Counter()
    with bar:
        if num_workers == 1 or len(tasks) == 1:
            cache = RepeatCache()
            _accumulate(total, (_count_chunk(task, cache) for task in tasks), bar)
        else:
            with Pool(min(num_workers, len(tasks)), _init_worker) as pool:
                _accumulate(total, pool.imap_unordered(_count_chunk, tasks), bar)
    return total


def _accumulate(total: Counter[str], results: Iterable[tuple[int, Counter[str]]], bar) -> None:
    for nbytes, counts in results:
        total.update(counts)
        bar.update(nbytes)


# Each worker process keeps one cache across the chunks it counts (set by the pool initializer).
_worker_cache: RepeatCache | None = None


def _init_worker() -> None:
    global _worker_cache
    _worker_cache = RepeatCache()


def _count_chunk(
    task: tuple[Path, int, int, list[str]], cache: RepeatCache | None = None
) -> tuple[int, Counter[str]]:
    path, start, end, special_tokens = task
    text = read_text(path, start, end)
    regex = special_token_regex(special_tokens)
    return end - start, count_pretokens(text, regex, cache or _worker_cache)


def learn_merges(
    words: dict[bytes, int], vocab: dict[int, bytes], num_merges: int, progress: bool = False
) -> list[tuple[bytes, bytes]]:
    """Learn up to ``num_merges`` merges from pre-token counts, adding each new token to ``vocab``.

    ``vocab`` must already hold the 256 single bytes; new ids continue after its largest id.
    Stops early when no pair is left (every pre-token is a single token).
    """
    byte_id = {tok[0]: i for i, tok in vocab.items() if len(tok) == 1}
    seqs = [list(map(byte_id.__getitem__, word)) for word in words]
    freqs = list(words.values())
    tie = {i: _tie_key(tok) for i, tok in vocab.items()}

    pair_counts: dict[Pair, int] = {}
    where: defaultdict[Pair, set[int]] = defaultdict(set)
    for w, (seq, freq) in enumerate(zip(seqs, freqs, strict=True)):
        get_stats(seq, pair_counts, freq)
        for pair in pairwise(seq):
            where[pair].add(w)
    heap = [(-n, tie[a], tie[b], a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[bytes, bytes]] = []
    next_id = max(vocab) + 1
    for _ in tqdm(range(num_merges), desc="merge", unit="merge", disable=bar_disabled(progress)):
        pair = _pop_best(heap, pair_counts, tie)
        if pair is None:
            break
        a, b = pair
        new_id, next_id = next_id, next_id + 1
        vocab[new_id] = vocab[a] + vocab[b]
        tie[new_id] = _tie_key(vocab[new_id])
        merges.append((vocab[a], vocab[b]))
        grown = _apply_merge(pair, new_id, seqs, freqs, pair_counts, where)
        for p in grown:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], tie[p[0]], tie[p[1]], p[0], p[1]))
    return merges


def _pop_best(heap: list, pair_counts: dict[Pair, int], tie: dict[int, str]) -> Pair | None:
    """Pop the most frequent pair, skipping stale entries (lazy invalidation).

    Every live pair has an entry whose count is at least its current count: counts only grow for
    pairs that contain a fresh token (pushed after each merge), and an entry found too high on pop
    is pushed back with the current count.
    """
    while heap:
        neg, _, _, a, b = heapq.heappop(heap)
        current = pair_counts.get((a, b), 0)
        if current == -neg:
            return a, b
        if 0 < current < -neg:
            heapq.heappush(heap, (-current, tie[a], tie[b], a, b))
    return None


def _apply_merge(
    pair: Pair,
    new_id: int,
    seqs: list[list[int]],
    freqs: list[int],
    pair_counts: dict[Pair, int],
    where: defaultdict[Pair, set[int]],
) -> set[Pair]:
    """Merge ``pair`` in every word that holds it; return the pairs whose counts grew.

    Only the neighbours of a merged occurrence change: when ``x a b y`` becomes ``x N y``, the
    pairs ``(x, a)`` and ``(b, y)`` lose the word's count and ``(x, N)`` and ``(N, y)`` gain it.
    Words are merged in place, left to right, so the left neighbour of a back-to-back occurrence
    (``a b a b``) is already ``N``. Words indexed under ``pair`` that lost it earlier are unchanged.
    """
    a, b = pair
    grown: set[Pair] = set()

    def move(old: Pair, new: Pair, freq: int, w: int) -> None:
        """Word ``w`` (seen ``freq`` times) now holds ``new`` where it held ``old``."""
        pair_counts[old] -= freq
        pair_counts[new] = pair_counts.get(new, 0) + freq
        grown.add(new)
        where[new].add(w)

    for w in where.pop(pair):
        seq, freq = seqs[w], freqs[w]
        i = 0
        try:
            while True:
                i = seq.index(a, i)
                if i + 1 < len(seq) and seq[i + 1] == b:
                    if i:
                        move((seq[i - 1], a), (seq[i - 1], new_id), freq, w)
                    if i + 2 < len(seq):
                        move((b, seq[i + 2]), (new_id, seq[i + 2]), freq, w)
                    seq[i : i + 2] = (new_id,)
                i += 1
        except ValueError:  # no further `a` in this word
            pass
    del pair_counts[pair]
    return grown

