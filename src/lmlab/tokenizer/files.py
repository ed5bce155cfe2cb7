"""GPT-2 style tokenizer files: ``vocab.json`` and ``merges.txt``, readable by humans.

Tokens are byte strings, which JSON and text files cannot hold as they are. GPT-2 maps each of the
256 bytes to a printable character (printable ASCII and Latin-1 map to themselves, the rest --
space, control bytes -- to characters from U+0100 on, so a leading space shows as ``Ġ``). A token is
written as the characters of its bytes; a merge as the two tokens separated by one space.
"""

import codecs
import json
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from functools import cache
from itertools import accumulate
from pathlib import Path
from typing import Any

from lmlab.atomic import atomic_write_text
from lmlab.errors import TokenizerError
from lmlab.tokenizer.bpe import split_at


@cache
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable character for each byte.

    >>> byte_to_unicode()[ord("a")], byte_to_unicode()[ord(" ")], byte_to_unicode()[0]
    ('a', 'Ġ', 'Ā')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    extra = (b for b in range(256) if b not in printable)
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + n) for n, b in enumerate(extra)})
    return mapping


@cache
def _gpt2_codec() -> tuple[str, Any]:
    """The 256 GPT-2 characters in byte order, and the encoding map that Python's ``charmap``
    codec builds from them: C then converts tokens (or a whole file of them) either way."""
    table = "".join(map(byte_to_unicode().__getitem__, range(256)))
    return table, codecs.charmap_build(table)


def token_to_str(token: bytes) -> str:
    """A token in GPT-2 notation.

    >>> token_to_str(b" the"), token_to_str(b"<|endoftext|>")
    ('Ġthe', '<|endoftext|>')
    """
    return codecs.charmap_decode(token, "strict", _gpt2_codec()[0])[0]


def str_to_token(text: str, where: str) -> bytes:
    """The bytes of a token written in GPT-2 notation; ``where`` names it in the error message.

    >>> str_to_token("Ġthe", "here")
    b' the'
    >>> str_to_token("a b", "vocab.json")
    Traceback (most recent call last):
    lmlab.errors.TokenizerError: vocab.json: ' ' is not a GPT-2 byte character
    """
    return strs_to_tokens([text], lambda i: where)[0]


def strs_to_tokens(texts: list[str], where: Callable[[int], str]) -> list[bytes]:
    """:func:`str_to_token` of each of ``texts``, converted together (one call into C for
    GPT-2's 150,000 tokens); ``where(i)`` names text ``i`` in an error.

    >>> strs_to_tokens(["Ġthe", "Ċ"], str)
    [b' the', b'\\n']
    """
    ends = list(accumulate(map(len, texts)))  # one character per byte
    try:
        data = codecs.charmap_encode("".join(texts), "strict", _gpt2_codec()[1])[0]
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start]
        text = bisect_right(ends, exc.start)
        raise TokenizerError(f"{where(text)}: {bad!r} is not a GPT-2 byte character") from None
    return split_at(data, ends)


def write_vocab(path: Path, vocab: dict[int, bytes]) -> None:
    """Write ``vocab.json``: ``{token in GPT-2 notation: id}`` in id order."""
    mapping = {token_to_str(tok): i for i, tok in sorted(vocab.items())}
    atomic_write_text(path, json.dumps(mapping, ensure_ascii=False, indent=1) + "\n")


def write_merges(path: Path, merges: list[tuple[bytes, bytes]]) -> None:
    """Write ``merges.txt``: one merge per line, in rank order."""
    lines = (f"{token_to_str(a)} {token_to_str(b)}\n" for a, b in merges)
    atomic_write_text(path, "".join(lines))


def read_vocab(path: Path, special_tokens: list[str] | None = None) -> dict[int, bytes]:
    """Read a GPT-2 style ``vocab.json``; entries equal to a special token are taken literally."""
    specials = set(special_tokens or [])
    raw = _read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise TokenizerError(f"{path}: expected a non-empty JSON object of token -> id")
    if not set(map(type, raw.values())) <= {int} or min(raw.values()) < 0:  # a pass in C
        text, idx = next((t, i) for t, i in raw.items() if type(i) is not int or i < 0)
        raise TokenizerError(f"{path}: token {text!r} has id {idx!r}, not an integer >= 0")
    if len(set(raw.values())) < len(raw):
        idx = next(i for i, n in Counter(raw.values()).items() if n > 1)
        raise TokenizerError(f"{path}: id {idx} is used twice")
    plain = [text for text in raw if text not in specials]
    vocab = dict(zip(map(raw.__getitem__, plain),
                     strs_to_tokens(plain, lambda i: f"{path}: token"), strict=True))
    for text in specials.intersection(raw):  # written as they are, or in GPT-2 notation
        try:
            vocab[raw[text]] = str_to_token(text, f"{path}: token")
        except TokenizerError:
            vocab[raw[text]] = text.encode("utf-8")
    return vocab


def read_merges(path: Path) -> list[tuple[bytes, bytes]]:
    """Read a GPT-2 style ``merges.txt`` (a ``#version`` header line is allowed)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TokenizerError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"{path}: invalid UTF-8 at byte offset {exc.start}") from None
    first = 1 if lines and lines[0].startswith("#version") else 0
    merges = [line for line in lines[first:] if line]

    def where(merge: int) -> str:  # the file and line number of the merge-th merge
        numbers = [n for n, line in enumerate(lines[first:], start=first + 1) if line]
        return f"{path}:{numbers[merge]}"

    text = "\n".join(merges)
    if merges and (bad := _NOT_A_MERGE.search(text)):
        merge = text.count("\n", 0, bad.start())
        raise TokenizerError(f"{where(merge)}: expected two tokens separated by one space")
    pairs = " ".join(merges).split(" ") if merges else []
    tokens = strs_to_tokens(pairs, lambda i: where(i // 2))
    return list(zip(tokens[0::2], tokens[1::2], strict=True))


_NOT_A_MERGE = re.compile(r"^(?![^ \n]+ [^ \n]+$)", re.MULTILINE)
"""The start of a line that is not two tokens separated by one space (one regex pass over
GPT-2's 50,000 merges instead of a Python call per line)."""


def write_special_tokens(path: Path, special_tokens: list[str]) -> None:
    """Write ``special_tokens.json``: the list of special tokens, as plain strings."""
    atomic_write_text(path, json.dumps(special_tokens, ensure_ascii=False) + "\n")


def read_special_tokens(path: Path) -> list[str]:
    """Read ``special_tokens.json``."""
    raw = _read_json(path)
    if not isinstance(raw, list) or not all(isinstance(t, str) and t for t in raw):
        raise TokenizerError(f"{path}: expected a JSON list of non-empty strings")
    return raw


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"{path}: not valid JSON ({exc})") from None
