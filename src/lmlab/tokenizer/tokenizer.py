"""The byte-level BPE tokenizer: text <-> token ids, with special tokens, save and load.

Encoding splits off special tokens, cuts the rest into GPT-2 pre-tokens, and turns each pre-token
into ids by replaying the merges in rank order; :mod:`.encoder` does that fast, with a cache.
"""

import hashlib
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import count, starmap
from operator import add, itemgetter
from pathlib import Path

import numpy as np

from lmlab.atomic import storage_errors
from lmlab.errors import TokenizerError
from lmlab.tokenizer.bpe import Pair, split_at
from lmlab.tokenizer.encoder import UnitEncoder, cycle_collector_paused
from lmlab.tokenizer.files import (
    read_merges,
    read_special_tokens,
    read_vocab,
    token_to_str,
    write_merges,
    write_special_tokens,
    write_vocab,
)
from lmlab.tokenizer.pretokenize import last_safe_cut, special_token_regex

VOCAB_FILE, MERGES_FILE, SPECIALS_FILE = "vocab.json", "merges.txt", "special_tokens.json"
END_OF_TEXT = "<|endoftext|>"
"""The document separator of TinyStories, OpenWebText and GPT-2: generation stops at it, and an
empty prompt starts from it."""
STREAM_CHARS = 1 << 16
"""How much text :meth:`Tokenizer.encode_iterable` gathers before encoding: a couple of MB of
numpy arrays at most, and enough text that new words are learned in batches, not a few at a
time."""


class Tokenizer:
    """Byte-level BPE with special tokens.

    ``vocab`` maps ids to token bytes, ``merges`` lists the merges in the order learned, and each
    special token is always encoded as its own id (added to the vocabulary when missing).
    Overlapping special tokens match longest first; text that merely resembles one is plain text.
    """

    @cycle_collector_paused()
    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[str] | None = None,
    ) -> None:
        self.vocab = dict(vocab)
        self.merges = list(merges)
        self.special_tokens = list(dict.fromkeys(special_tokens or []))
        # The maps below are built in C (map, zip, deque), not by a Python step per token and
        # per merge: GPT-2 has 50,000 of each, and every `lmlab tokenizer encode` loads them.
        order = sorted(self.vocab, reverse=True)  # the lowest id of a repeated token is kept
        ids = dict(zip(map(self.vocab.__getitem__, order), order, strict=True))
        missing = [b for b in range(256) if bytes([b]) not in ids]
        if missing:
            raise TokenizerError(f"vocabulary lacks {len(missing)} single bytes, e.g. {missing[0]}")
        for special in self.special_tokens:
            if special.encode("utf-8") not in ids:
                ids[special.encode("utf-8")] = self.vocab_size
                self.vocab[self.vocab_size] = special.encode("utf-8")
        self._special_ids = {tok: ids[tok.encode("utf-8")] for tok in self.special_tokens}
        left = list(map(ids.get, map(itemgetter(0), self.merges)))
        right = list(map(ids.get, map(itemgetter(1), self.merges)))
        made = list(map(ids.get, starmap(add, self.merges)))
        if None in left or None in right or None in made:
            merges = enumerate(zip(left, right, made, strict=True))
            rank = next(r for r, merge in merges if None in merge)
            a, b = self.merges[rank]
            shown = [token_to_str(t) if isinstance(t, bytes) else repr(t) for t in (a, b)]
            where = f"merge {rank + 1} ({' '.join(shown)})"
            raise TokenizerError(f"{where} uses a token missing from the vocabulary")
        ranks: dict[Pair, tuple[int, int]] = {}  # pair -> (rank, merged id); a repeat is unused
        deque(map(ranks.setdefault, zip(left, right, strict=True), zip(count(), made)), maxlen=0)
        self._encoder = UnitEncoder(ids, ranks)
        self._special_re = special_token_regex(self.special_tokens)

    @property
    def vocab_size(self) -> int:
        """One more than the largest id: the size of an embedding table for these ids."""
        return max(self.vocab) + 1

    @property
    def special_ids(self) -> dict[str, int]:
        """The id of each special token."""
        return dict(self._special_ids)

    def fingerprint(self) -> str:
        """A sha256 of what the ids mean: equal for tokenizers that encode and decode alike.

        Every sidecar of ``lmlab tokenizer encode`` records one, so it is hashed from arrays
        rather than from 100,000 token strings: the ids of the 256 single bytes, the merges as
        id pairs in rank order with the id each makes (which spell out those tokens' bytes), any
        other token with its bytes, and the special tokens.
        """
        merger = self._encoder.merger
        ids = np.sort(np.fromiter(self.vocab, np.int64, len(self.vocab)))
        others = ids[~np.isin(ids, np.concatenate((merger.byte_ids, merger.products)))]
        digest = hashlib.sha256(np.array([len(merger.pairs), len(others)]).tobytes())
        for array in (merger.byte_ids, merger.pairs, merger.products, others):
            digest.update(array.astype(np.int64).tobytes())
        words = [[self.vocab[i] for i in others.tolist()], self.special_tokens]
        digest.update(repr(words).encode("utf-8"))
        return digest.hexdigest()

    # -- encoding ---------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``.

        A str may hold surrogates that are not Unicode text (``surrogateescape`` decoding makes
        them); as in tiktoken, a surrogate pair counts as its character and a lone one as U+FFFD.
        """
        return self.encode_to_numpy(text).tolist()

    def encode_to_numpy(self, text: str) -> np.ndarray:
        """Token ids of ``text`` as an ``int64`` array (``(tokens,)``): for token files, without
        a Python int per id."""
        return self._encode_flat([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids of each of ``texts``, each as :meth:`encode` gives it.

        The words that the texts bring for the first time are learned together, so one call
        over many short texts (documents, dataset rows) is much faster than a call per text.
        """
        ids, ends = self._encode_flat(texts)
        return split_at(ids.tolist(), ends.tolist())

    def _encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of ``texts`` one after another, and where each text's ids end."""
        try:
            return self._encode_parts(texts)
        except UnicodeEncodeError:  # surrogates: re-encode the texts as tiktoken would see them
            return self._encode_parts([_as_unicode(text) for text in texts])

    def _encode_parts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode the ordinary text between special tokens together, then insert the special
        tokens' ids where they were."""
        if self._special_re is None:
            return self._encoder.encode(texts)
        parts: list[str] = []  # the ordinary text of all texts
        specials, after_part, last_part = [], [], []
        for text in texts:
            split = self._special_re.split(text)  # text, special, text, ..., text
            for i, special in enumerate(split[1::2]):
                specials.append(self._special_ids[special])
                after_part.append(len(parts) + i)
            parts += split[0::2]
            last_part.append(len(parts) - 1)
        ids, part_ends = self._encoder.encode(parts)
        if not specials:
            return ids, part_ends[last_part]
        ids = np.insert(ids, part_ends[after_part], specials)
        specials_so_far = np.searchsorted(after_part, last_part, side="right")
        return ids, part_ends[last_part] + specials_so_far

    def encode_iterable(self, texts: Iterable[str]) -> Iterator[int]:
        """Stream the ids of the concatenation of ``texts`` (e.g. an open file, line by line).

        The ids equal ``encode("".join(texts))`` however the text is cut. Text is encoded once
        ``STREAM_CHARS`` have gathered (new words are learned faster in batches), up to the last
        safe cut (see :mod:`.pretokenize`); the rest waits, so memory does not grow with input.
        """
        buffer = ""
        for text in texts:
            buffer += text
            if len(buffer) >= STREAM_CHARS and (cut := last_safe_cut(buffer, self.special_tokens)):
                yield from self.encode(buffer[:cut])
                buffer = buffer[cut:]
        if buffer:
            yield from self.encode(buffer)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; byte sequences that are not valid UTF-8 become U+FFFD."""
        try:
            data = b"".join(map(self.vocab.__getitem__, ids))
        except KeyError as exc:
            raise TokenizerError(f"token id {exc.args[0]!r} is not in the vocabulary") from None
        return data.decode("utf-8", errors="replace")

    # -- files ------------------------------------------------------------------------------

    @classmethod
    @cycle_collector_paused()
    def from_files(
        cls,
        vocab_path: str | Path,
        merges_path: str | Path,
        special_tokens: list[str] | None = None,
    ) -> "Tokenizer":
        """Load GPT-2 style ``vocab.json`` and ``merges.txt`` (e.g. GPT-2's own files)."""
        vocab = read_vocab(Path(vocab_path), special_tokens)
        return cls(vocab, read_merges(Path(merges_path)), special_tokens)

    def save(self, directory: str | Path) -> None:
        """Write ``vocab.json``, ``merges.txt`` and ``special_tokens.json`` into ``directory``."""
        directory = Path(directory)
        with storage_errors(directory):
            directory.mkdir(parents=True, exist_ok=True)
        write_vocab(directory / VOCAB_FILE, self.vocab)
        write_merges(directory / MERGES_FILE, self.merges)
        write_special_tokens(directory / SPECIALS_FILE, self.special_tokens)

    def to_texts(self) -> dict[str, str]:
        """The files :meth:`save` writes, as ``{file name: text}``: a tokenizer to carry inside
        another file (``lmlab export`` puts it in the weights' metadata)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save(tmp)
            return {path.name: path.read_text(encoding="utf-8") for path in Path(tmp).iterdir()}

    @classmethod
    def from_texts(cls, texts: dict[str, str]) -> "Tokenizer":
        """The tokenizer :meth:`to_texts` described."""
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in texts.items():
                (Path(tmp) / Path(name).name).write_text(text, encoding="utf-8")
            return cls.load(tmp)

    @classmethod
    def load(cls, directory: str | Path) -> "Tokenizer":
        """Load a tokenizer written by :meth:`save` (``special_tokens.json`` may be absent)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise TokenizerError(f"{directory}: no such tokenizer directory")
        specials_path = directory / SPECIALS_FILE
        specials = read_special_tokens(specials_path) if specials_path.exists() else []
        return cls.from_files(directory / VOCAB_FILE, directory / MERGES_FILE, specials)


def _as_unicode(text: str) -> str:
    """``text`` with each surrogate pair joined into its character and each lone surrogate
    replaced by U+FFFD, as tiktoken encodes such a str.

    >>> _as_unicode("a\\ud83d\\ude00b\\udc80")
    'a😀b�'
    """
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
