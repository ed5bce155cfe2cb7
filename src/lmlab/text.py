"""Wording shared by the messages lmlab prints: a count with its noun in the right number, so no
line says "1 steps" or "1 runs"."""


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``count`` (with thousands separators) and ``noun``, plural unless the count is one;
    ``nouns`` is an irregular plural.

    >>> plural(1, "step"), plural(3, "run"), plural(1_200, "batch", "batches")
    ('1 step', '3 runs', '1,200 batches')
    """
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"
