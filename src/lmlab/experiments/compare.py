"""Comparing runs: which config keys set them apart, and how to name them by those keys.

The sweep summary, the plots and the report all need to say *what differs* between runs (the
columns of a table, the legend of a plot): configs are flattened to dotted keys
(:func:`lmlab.config.flatten`) and compared key by key; the ``run.*`` keys, which name or place a
run rather than change what it learns, never count.
"""

import json
from collections.abc import Sequence
from typing import Any

from lmlab.config import format_value

IGNORED_SECTIONS = ("run.",)
"""Config keys that name or place a run rather than change what it learns."""


def varied_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The flattened keys whose values are not the same in every config (``run.*`` aside).

    >>> varied_keys([{"optim.lr_max": 1, "run.name": "a"}, {"optim.lr_max": 2, "run.name": "b"}])
    ['optim.lr_max']
    """
    keys = sorted({key for config in configs for key in config})
    return [key for key in keys if not key.startswith(IGNORED_SECTIONS)
            and len({json.dumps(config.get(key)) for config in configs}) > 1]


def differences(config: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The keys where ``config`` differs from ``base`` (``run.*`` aside), with ``config``'s
    values."""
    return {key: value for key, value in config.items()
            if not key.startswith(IGNORED_SECTIONS) and base.get(key) != value}


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key by its last part, or whole where two keys share a last part.

    >>> short_names(["optim.lr_max", "train.batch_size"])
    {'optim.lr_max': 'lr_max', 'train.batch_size': 'batch_size'}
    """
    last = [key.rpartition(".")[2] for key in keys]
    return {key: short if last.count(short) == 1 else key
            for key, short in zip(keys, last, strict=True)}


def label(config: dict[str, Any], keys: Sequence[str]) -> str:
    """``"lr_max=0.001 norm=none"``: a run described by its values of ``keys``."""
    names = short_names(keys)
    return " ".join(f"{names[key]}={format_value(config.get(key))}" for key in keys)
