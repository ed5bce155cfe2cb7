"""GPT-2 style tokenizer files: ``vocab.json`` and ``merges.txt``, readable by humans.

Tokens are byte strings, which JSON and text files cannot hold as they are. GPT-2 maps each of the
256 bytes to a printable character (printable ASCII and Latin-1 map to themselves, the rest --
space, control bytes -- to characters from U+0100 on, so a leading space shows as ``Ġ``). A token is
written as the characters of its bytes; a merge as the two tokens separated by one space.
"""

import json
from functools import cache
from pathlib import Path

from lmlab.atomic import atomic_write_text
from lmlab.errors import TokenizerError


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
def unicode_to_byte() -> dict[str, int]:
    """The inverse of :func:`byte_to_unicode`."""
    return {ch: b for b, ch in byte_to_unicode().items()}


def token_to_str(token: bytes) -> str:
    """A token in GPT-2 notation.

    >>> token_to_str(b" the"), token_to_str(b"<|endoftext|>")
    ('Ġthe', '<|endoftext|>')
    """
    table = byte_to_unicode()
    return "".join(table[b] for b in token)


def str_to_token(text: str, where: str) -> bytes:
    """The bytes of a token written in GPT-2 notation; ``where`` names it in the error message."""
    table = unicode_to_byte()
    try:
        return bytes(table[ch] for ch in text)
    except KeyError as exc:
        raise TokenizerError(f"{where}: {exc.args[0]!r} is not a GPT-2 byte character") from None


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
    vocab: dict[int, bytes] = {}
    for text, idx in raw.items():
        if not isinstance(idx, int) or idx < 0:
            raise TokenizerError(f"{path}: token {text!r} has id {idx!r}, not an integer >= 0")
        if idx in vocab:
            raise TokenizerError(f"{path}: id {idx} is used twice")
        in_gpt2 = all(ch in unicode_to_byte() for ch in text)
        literal = text in specials and not in_gpt2
        vocab[idx] = text.encode("utf-8") if literal else str_to_token(text, f"{path}: token")
    return vocab


def read_merges(path: Path) -> list[tuple[bytes, bytes]]:
    """Read a GPT-2 style ``merges.txt`` (a ``#version`` header line is allowed)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise TokenizerError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise TokenizerError(f"{path}: invalid UTF-8 at byte offset {exc.start}") from None
    merges = []
    for number, line in enumerate(lines, start=1):
        if not line or (number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerError(f"{path}:{number}: expected two tokens separated by one space")
        where = f"{path}:{number}"
        merges.append((str_to_token(parts[0], where), str_to_token(parts[1], where)))
    return merges


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
