"""Pre-tokenization: the GPT-2 regex, special tokens, and where text may safely be cut.

BPE never merges across pre-token boundaries, so training only needs *how often* each pre-token
occurs, and encoding can work on pieces of text independently -- as long as each piece ends at a
point where the regex would also have cut the whole text. Two facts make such points easy to find:

- No GPT-2 pre-token contains a non-space character followed by a whitespace character (spaces
  only ever *lead* a pre-token), so the position between ``\\S`` and ``\\s`` is always a boundary,
  and the regex behaves the same on both sides whether the text is cut there or not.
- Special tokens are split off first, so a cut must not fall inside one (or inside a prefix of one
  at the end of a buffer, which might still grow into it).
"""

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import AnyStr

import regex

from lmlab.errors import DataError

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKEN_RE = regex.compile(GPT2_PATTERN)
# The same pattern for ASCII text, where a letter is [A-Za-z], a number [0-9] and a space one of
# six characters (not \x1c-\x1f, which Python's `re` would count): `re` runs it faster than
# `regex` runs the GPT-2 pattern (measured: docs/benchmarks.md, "BPE training").
_S = r"\t\n\x0b\x0c\r "
ASCII_PRETOKEN_RE = re.compile(
    rf"""'(?:[sdmt]|ll|ve|re)| ?[A-Za-z]+| ?[0-9]+| ?[^{_S}A-Za-z0-9]+|[{_S}]+(?![^{_S}])|[{_S}]+"""
)

# Unicode White_Space, the `\s` of the `regex` module (Python's `re` also counts \x1c-\x1f).
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
UNIT_RE = re.compile(f"[{WHITESPACE}]*+[^{WHITESPACE}]++|[{WHITESPACE}]++")
r"""Units: a run of whitespace and the run of non-space after it. Every boundary between units is
a ``\S\s`` position, so units pre-tokenize on their own exactly as within the whole text; and
natural text repeats units (`` the``, `` said,``) enough that encoding caches them. A simple
pattern with ``re`` finds units faster than the GPT-2 regex finds pre-tokens; its quantifiers are
possessive (no backtracking), since the two classes never compete for a character (measured:
docs/benchmarks.md, "Encoding")."""

# A `\S\s` position in a str: the next one, and the last one (searched backwards from the end).
_CUT_RE = regex.compile(r"\S(?=\s)")
_LAST_CUT_RE = regex.compile(r"\S(?=\s)", flags=regex.REVERSE)
# The same rule on raw bytes, restricted to ASCII so a cut never lands inside a UTF-8 character:
# a printable non-space byte followed by a space or newline.
_CUT_BYTES_RE = re.compile(rb"[\x21-\x7e](?=[ \n])")
_BOUNDARY_WINDOW = 1 << 16


def pretokens(text: str) -> list[str]:
    """The GPT-2 pre-tokens of ``text`` (with the faster ``re`` pattern when it is all ASCII).

    >>> pretokens("Hello, world's  2 cats!")
    ['Hello', ',', ' world', "'s", ' ', ' 2', ' cats', '!']
    """
    return _pattern_for(text).findall(text)


def is_one_pretoken(text: str) -> bool:
    """Whether ``text`` is a single GPT-2 pre-token: the pattern matches all of it (no
    alternative of the pattern can match the whole of a text that an earlier one cuts short).

    >>> is_one_pretoken(" world"), is_one_pretoken("<|endoftext|>")
    (True, False)
    """
    return _pattern_for(text).fullmatch(text) is not None


def _pattern_for(text: str):
    return ASCII_PRETOKEN_RE if text.isascii() else PRETOKEN_RE


def special_token_regex(special_tokens: Sequence[str]) -> regex.Pattern | None:
    """A pattern matching any special token, longest first, with one capture group.

    Longest first makes overlapping tokens (``<|a|>`` and ``<|a|><|a|>``) match the longer one;
    the capture group makes ``pattern.split`` keep the tokens at the odd positions.

    >>> special_token_regex(["<|a|>", "<|a|><|a|>"]).split("x<|a|><|a|>y")
    ['x', '<|a|><|a|>', 'y']
    """
    if not special_tokens:
        return None
    alternatives = sorted(set(special_tokens), key=len, reverse=True)
    return regex.compile("(" + "|".join(regex.escape(tok) for tok in alternatives) + ")")


class RepeatCache:
    """Pre-tokens of documents that occurred more than once, up to a budget of characters.

    A process that counts many chunks of a corpus keeps one: a document repeated across chunks
    (boilerplate, duplicated text) is then run through the regex once. Documents seen only once
    are not kept, so on text without repeats the cache stays empty.
    """

    def __init__(self, max_chars: int = 1 << 22) -> None:
        self.pieces: dict[str, list[str]] = {}
        self.chars_left = max_chars

    def add(self, doc: str, pieces: list[str]) -> None:
        if len(doc) <= self.chars_left:
            self.pieces[doc] = pieces
            self.chars_left -= len(doc)


def count_pretokens(
    text: str, special_re: regex.Pattern | None, cache: RepeatCache | None = None
) -> Counter[str]:
    """How often each pre-token occurs in ``text``; special tokens are removed, never counted.

    Identical documents (the text between special tokens) are pre-tokenized only once: running the
    regex dominates training time, and real corpora repeat boilerplate and whole documents. The
    pre-tokens of documents with the same number of repeats are counted together, in C.

    >>> sorted(count_pretokens("hi hi<|e|>hi hi", special_token_regex(["<|e|>"])).items())
    [(' hi', 2), ('hi', 2)]
    """
    cache = cache or RepeatCache(0)
    documents = Counter(special_re.split(text)[::2]) if special_re else Counter([text])
    by_repeats: defaultdict[int, list[str]] = defaultdict(list)
    for doc, repeats in documents.items():
        pieces = cache.pieces.get(doc)
        if pieces is None:
            pieces = pretokens(doc)
            if repeats > 1:
                cache.add(doc, pieces)
        by_repeats[repeats].extend(pieces)
    counts = Counter(by_repeats.pop(1, []))
    for repeats, pieces in by_repeats.items():
        for piece, n in Counter(pieces).items():
            counts[piece] += n * repeats
    return counts


def straddles_special(text: AnyStr, cut: int, specials: Sequence[AnyStr]) -> bool:
    """Whether cutting ``text`` at ``cut`` could split a special token.

    True when a special token starts before ``cut`` and either continues past it or is cut off by
    the end of ``text`` (a prefix that may still become the token when more text arrives).

    >>> straddles_special("ab<|e|>", 4, ["<|e|>"]), straddles_special("ab<|e", 4, ["<|e|>"])
    (True, True)
    >>> straddles_special("ab<|e|> x", 7, ["<|e|>"])
    False
    """
    for tok in specials:
        for start in range(max(0, cut - len(tok) + 1), cut):
            if tok.startswith(text[start : start + len(tok)]):
                return True
    return False


def last_safe_cut(text: str, special_tokens: Sequence[str]) -> int:
    """The largest ``i > 0`` such that encoding ``text[:i]`` and ``text[i:]`` apart is exact, or 0.

    >>> last_safe_cut("hello world  ", []), last_safe_cut("hello", [])
    (11, 0)
    >>> last_safe_cut("a b<|e|> c", ["<|e|>"])
    8
    """
    end = len(text)
    while (m := _LAST_CUT_RE.search(text, 0, end)) is not None:
        if not straddles_special(text, m.end(), special_tokens):
            return m.end()
        end = m.start()
    return 0


def cut_text(text: str, size: int) -> list[str]:
    """``text`` (holding no special tokens) cut at safe points into pieces of at most ``size``
    characters, each as long as it can be; a piece is longer only where no safe cut is near.

    >>> cut_text("one two three", 8), cut_text("one two three", 2)
    (['one two', ' three'], ['one', ' two', ' three'])
    """
    pieces, start = [], 0
    while len(text) - start > size:
        cut = _LAST_CUT_RE.search(text, start, start + size) or _CUT_RE.search(text, start + size)
        if cut is None:
            break
        pieces.append(text[start : cut.end()])
        start = cut.end()
    pieces.append(text[start:])
    return pieces


def find_chunk_boundaries(path: Path, chunk_bytes: int, special_tokens: Sequence[str]) -> list[int]:
    """Byte offsets ``[0, ..., size]`` that cut the file into pieces of about ``chunk_bytes``.

    Each offset is a safe cut (see the module docstring), so the pieces can be decoded, counted or
    encoded independently and give exactly what the whole file gives.
    """
    size = path.stat().st_size
    specials = [tok.encode("utf-8") for tok in special_tokens]
    overlap = max((len(tok) for tok in specials), default=1)
    boundaries = [0]
    with open(path, "rb") as f:
        for target in range(chunk_bytes, size, chunk_bytes):
            if target <= boundaries[-1]:
                continue
            cut = _next_safe_byte_cut(f, target, size, specials, overlap)
            if cut >= size:
                break
            boundaries.append(cut)
    boundaries.append(size)
    return boundaries


def _next_safe_byte_cut(f, pos: int, size: int, specials: list[bytes], overlap: int) -> int:
    """The first safe cut at or after byte ``pos`` of the open file ``f`` (``size`` if none)."""
    while pos < size:
        lo = max(0, pos - overlap)
        f.seek(lo)
        buf = f.read(pos - lo + _BOUNDARY_WINDOW + overlap)
        for m in _CUT_BYTES_RE.finditer(buf, max(0, pos - lo - 1), pos - lo + _BOUNDARY_WINDOW):
            cut = m.end()
            if not straddles_special(buf, cut, specials):
                return lo + cut
        pos += _BOUNDARY_WINDOW
    return size


def read_text(path: Path, start: int, end: int) -> str:
    """Bytes ``[start, end)`` of ``path`` as text; invalid UTF-8 is an error naming its offset."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: invalid UTF-8 at byte offset {start + exc.start} ({exc.reason})"
        ) from None
