"""Token files: the one home of a ``.bin`` of token ids and its JSON sidecar (write, read, check).

::

    text file ─► tokenize_file ─► train.bin (flat uint16/uint32 ids) + train.bin.json (sidecar)
    train.bin ─► load_tokens ─► TokenFile (read-only np.memmap, checked against its sidecar)

The ``.bin`` is raw ``uint16`` ids (``uint32`` when the vocabulary exceeds 65,536), so training
reads it with ``np.memmap`` without loading it: a dataset far larger than RAM trains fine, a batch
reads only its own windows. The sidecar ``<name>.bin.json`` records what is needed to use the ids
correctly: dtype and count (to map the file), the vocabulary size and tokenizer fingerprint (to
match a model and tokenizer), and the source text's size in bytes (``source_bytes``, which turns
a loss in nats per token into bits per byte). Both files are written atomically.
"""

import json
import os
import shlex
from dataclasses import asdict, dataclass, fields
from itertools import pairwise
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lmlab.atomic import atomic_path, atomic_write_json
from lmlab.errors import DataError
from lmlab.progress import bar_disabled
from lmlab.text import plural
from lmlab.tokenizer.pretokenize import find_chunk_boundaries, read_text
from lmlab.tokenizer.tokenizer import Tokenizer

CHUNK_BYTES = 4 << 20
"""Largest piece of the input one worker encodes at a time."""
WORKER_MIN_BYTES = 4 << 20
"""Input per worker below which fewer processes are started: each worker learns the words of
its text on its own (a first pass is slower than a cached one), so on a small file a second
process repeats that work and its start-up for little gain (measured: docs/benchmarks.md,
"Encoding")."""
FORMAT = "lmlab-tokens-v1"
_SCAN_CHUNK = 1 << 24
"""Ids read at a time when scanning a file for its largest id."""


@dataclass(frozen=True)
class TokenFileInfo:
    """The sidecar of a token file."""

    dtype: str
    """``uint16`` or ``uint32``."""
    count: int
    """Number of token ids in the ``.bin``."""
    vocab_size: int
    """One more than the largest id the tokenizer can produce."""
    tokenizer_hash: str
    """:meth:`Tokenizer.fingerprint` of the tokenizer that wrote the ids."""
    special_tokens: dict[str, int]
    """Each special token and its id (e.g. ``<|endoftext|>``, the document separator)."""
    source_path: str
    """Absolute path of the text file that was tokenized."""
    source_bytes: int
    """Size of that text file in bytes (for bits per byte)."""
    format: str = FORMAT
    tokenizer_dir: str | None = None
    """Absolute path of the folder the tokenizer was loaded from, when the writer knew it
    (``lmlab tokenizer encode``): where a run trained on the file finds its tokenizer. Not part
    of what the file holds (:attr:`contents`); sidecars written before it have none."""

    @property
    def contents(self) -> tuple[str, int, str, int]:
        """What the ids are, wherever the file lies: the text they came from (path and size), the
        tokenizer that wrote them and their count. Two files with equal contents hold the same
        data (two runs that each tokenized one text into a folder of their own)."""
        return self.source_path, self.source_bytes, self.tokenizer_hash, self.count


def sidecar_path(bin_path: str | Path) -> Path:
    """Where the sidecar of ``bin_path`` lives: ``train.bin`` -> ``train.bin.json``."""
    bin_path = Path(bin_path)
    return bin_path.with_name(bin_path.name + ".json")


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id below ``vocab_size``.

    >>> token_dtype(50257), token_dtype(65537)
    (dtype('uint16'), dtype('uint32'))
    """
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def tokenize_file(
    tokenizer: Tokenizer,
    input_path: str | Path,
    out_path: str | Path,
    *,
    num_workers: int | None = None,
    progress: bool = True,
    tokenizer_dir: str | Path | None = None,
) -> TokenFileInfo:
    """Encode ``input_path`` into ``out_path`` (``.bin``) and its sidecar; return the sidecar.

    The file is cut at safe boundaries into chunks that ``num_workers`` processes (default: the
    CPU count; at most one per ``WORKER_MIN_BYTES`` of input) encode in parallel; the ids equal
    ``tokenizer.encode`` of the whole text. Memory is
    bounded by a few chunks per worker, so the input may be larger than memory. Both files are
    written atomically. ``tokenizer_dir``, the folder ``tokenizer`` was loaded from, is recorded
    in the sidecar so that the model trained on the ids finds its tokenizer.
    """
    source, out = Path(input_path), Path(out_path)
    if not source.is_file():
        raise DataError(f"{source}: no such file")
    size = source.stat().st_size
    if size == 0:
        raise DataError(f"{source}: file is empty")
    workers = min(num_workers or os.cpu_count() or 1, -(-size // WORKER_MIN_BYTES))
    dtype = token_dtype(tokenizer.vocab_size)
    chunk_bytes = CHUNK_BYTES  # large: new words are learned faster in large batches
    if workers > 1:  # but several chunks per worker, so that all stay busy to the end
        chunk_bytes = max(1, min(CHUNK_BYTES, -(-size // (4 * workers))))
    bounds = find_chunk_boundaries(source, chunk_bytes, tokenizer.special_tokens)
    tasks = [(source, start, end, dtype) for start, end in pairwise(bounds)]
    count = 0
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="tokenize",
               disable=bar_disabled(progress))
    with bar, atomic_path(out) as tmp, open(tmp, "wb") as f:
        if workers == 1 or len(tasks) == 1:
            count = _write_all(f, (_encode_with(tokenizer, task) for task in tasks), bar)
        else:
            with Pool(min(workers, len(tasks)), _init_worker, (tokenizer,)) as pool:
                count = _write_all(f, pool.imap(_encode_chunk, tasks), bar)
        info = TokenFileInfo(
            dtype=dtype.name,
            count=count,
            vocab_size=tokenizer.vocab_size,
            tokenizer_hash=tokenizer.fingerprint(),
            special_tokens=tokenizer.special_ids,
            source_path=str(source.resolve()),
            source_bytes=size,
            tokenizer_dir=None if tokenizer_dir is None else str(Path(tokenizer_dir).resolve()),
        )
        atomic_write_json(sidecar_path(out), asdict(info))
    return info


def _write_all(f, results, bar) -> int:
    count = 0
    for nbytes, ids in results:
        f.write(ids.tobytes())
        count += len(ids)
        bar.update(nbytes)
    return count


# Each worker process holds one tokenizer (set by the pool initializer) so its pre-token cache
# stays warm across chunks instead of being pickled with every task.
_worker_tokenizer: Tokenizer | None = None


def _init_worker(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_chunk(task: tuple[Path, int, int, np.dtype]) -> tuple[int, np.ndarray]:
    assert _worker_tokenizer is not None, "the pool initializer sets the tokenizer"
    return _encode_with(_worker_tokenizer, task)


def _encode_with(tokenizer: Tokenizer, task: tuple[Path, int, int, np.dtype]):
    path, start, end, dtype = task
    return end - start, tokenizer.encode_to_numpy(read_text(path, start, end)).astype(dtype)


def read_token_info(bin_path: str | Path) -> TokenFileInfo:
    """Read and check the sidecar of ``bin_path`` against the ``.bin`` itself."""
    bin_path = Path(bin_path)
    side = sidecar_path(bin_path)
    if not bin_path.is_file():
        out = shlex.quote(str(bin_path))
        raise DataError(f"{bin_path}: no such token file (make it from a text file with `lmlab "
                        f"tokenizer encode --tokenizer DIR --input TEXT --out {out}`)")
    try:
        raw = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{side}: sidecar missing (written by `lmlab tokenizer encode`)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{side}: not valid JSON ({exc})") from None
    names = {f.name for f in fields(TokenFileInfo) if f.name != "tokenizer_dir"}  # required
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not names <= raw.keys():
        raise DataError(f"{side}: not an lmlab token sidecar ({FORMAT!r} with {sorted(names)})")
    info = TokenFileInfo(**{k: raw[k] for k in (*names, "tokenizer_dir") if k in raw})
    if info.dtype not in ("uint16", "uint32"):
        raise DataError(f"{side}: dtype {info.dtype!r} is not uint16 or uint32")
    if not isinstance(info.count, int) or info.count <= 0:
        raise DataError(f"{side}: count {info.count!r} is not a positive integer")
    expected = info.count * np.dtype(info.dtype).itemsize
    actual = bin_path.stat().st_size
    if actual != expected:
        raise DataError(
            f"{bin_path}: holds {actual} bytes but its sidecar says {info.count} {info.dtype} ids"
            f" ({expected} bytes)"
        )
    return info


@dataclass(frozen=True)
class TokenFile:
    """A memory-mapped token file and its sidecar."""

    path: Path
    info: TokenFileInfo
    tokens: np.memmap
    """The ids, shape ``(count,)``, memory-mapped read-only."""

    @property
    def source_bytes(self) -> int:
        """UTF-8 bytes of the text the tokens were made from (for bits per byte)."""
        return self.info.source_bytes

    def __len__(self) -> int:
        return len(self.tokens)


def unigram_loss(ids: np.ndarray) -> float:
    """Cross-entropy (nats per token) of a model that knows only how often each id occurs in
    ``ids`` (a token file's memmap, read a chunk at a time): the entropy of their frequencies. A
    language model that does no better has learned nothing beyond them.

    >>> round(unigram_loss(np.array([0, 0, 1, 1])), 4)  # two ids, equally often: ln 2
    0.6931
    """
    counts = np.zeros(0, dtype=np.int64)
    for start in range(0, len(ids), _SCAN_CHUNK):
        chunk = np.bincount(ids[start:start + _SCAN_CHUNK])
        counts = np.pad(counts, (0, max(0, len(chunk) - len(counts))))
        counts[:len(chunk)] += chunk
    frequencies = counts[counts > 0] / counts.sum()
    return float(-(frequencies * np.log(frequencies)).sum())


def check_same_tokenizer(path: str | Path, info: TokenFileInfo, reference: str | Path,
                         reference_info: TokenFileInfo) -> None:
    """Raise :class:`DataError` unless the token files ``path`` and ``reference`` were written by
    the same tokenizer (by the fingerprints of their sidecars).

    Why: ids of another tokenizer are valid ids to the model, so a loss on them is a plausible,
    meaningless number; only the fingerprint tells the two apart.
    """
    if info.tokenizer_hash != reference_info.tokenizer_hash:
        raise DataError(
            f"{path} was made by another tokenizer than {reference} (a {info.vocab_size:,}-token "
            f"tokenizer {info.tokenizer_hash[:12]} against a {reference_info.vocab_size:,}-token "
            f"tokenizer {reference_info.tokenizer_hash[:12]}): tokenize it with the tokenizer "
            f"that made {reference}")


def load_tokens(bin_path: str | Path, *, vocab_size: int | None = None,
                context_length: int | None = None,
                tokenizer_of: str | Path | None = None) -> TokenFile:
    """Memory-map a token file, checked against its sidecar and, when given, against the model
    it is to feed and the token file whose tokenizer it must share (``tokenizer_of``: the
    training data, for a validation file).

    Raises :class:`DataError` when the file or its sidecar is missing or malformed, when the file
    holds an id ``>= vocab_size``, has fewer than ``context_length + 1`` tokens (one input
    window plus its last target), or was made by another tokenizer than ``tokenizer_of``.
    """
    path = Path(bin_path)
    info = read_token_info(path)
    if tokenizer_of is not None:
        check_same_tokenizer(path, info, tokenizer_of, read_token_info(tokenizer_of))
    if context_length is not None and info.count < context_length + 1:
        raise DataError(f"{path} has {plural(info.count, 'token')}, fewer than one context of "
                        f"{context_length} + 1 (model.context_length)")
    tokens = np.memmap(path, dtype=info.dtype, mode="r", shape=(info.count,))
    if vocab_size is not None and info.vocab_size > vocab_size:
        # the tokenizer could produce ids the model lacks: look for one
        largest = max(int(tokens[i:i + _SCAN_CHUNK].max())
                      for i in range(0, info.count, _SCAN_CHUNK))
        if largest >= vocab_size:
            raise DataError(f"{path} holds token id {largest}, beyond the model's vocabulary of "
                            f"{vocab_size} (model.vocab_size): a {info.vocab_size:,}-token "
                            f"tokenizer made it, so tokenize the text with a {vocab_size:,}-token "
                            f"tokenizer into another folder (each preset names its vocabulary "
                            f"in its data path), or set model.vocab_size={info.vocab_size}")
    return TokenFile(path, info, tokens)
