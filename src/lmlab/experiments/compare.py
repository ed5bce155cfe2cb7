"""Comparing runs: which config keys set them apart, and how to name them by those keys.

The sweep summary, the plots and the report all need to say *what differs* between runs (the
columns of a table, the legend of a plot): configs are flattened to dotted keys
(:func:`lmlab.config.flatten`) and compared by :func:`lmlab.config.diff`; bookkeeping keys
(:data:`lmlab.config.BOOKKEEPING`: a run's name and place, how often it is evaluated) never
count. Token files are compared by what they hold, not where they lie: runs that each tokenized
the same text with the same tokenizer into a folder of their own (``lmlab quickstart``) trained
on the same data, so they are seeds of one point, not two points.
"""

import json
import re
from collections.abc import Sequence
from typing import Any

from lmlab.config import BOOKKEEPING, SEED, diff, format_value, has_role
from lmlab.errors import DataError
from lmlab.tokens import read_token_info
from lmlab.training.rundir import Run

TOKEN_FILES = ("data.train_path", "data.valid_path")


def data_identity(path: Any) -> Any:
    """What a token file holds (:attr:`lmlab.tokens.TokenFileInfo.contents`); the path itself when
    there is none or it cannot be read (moved, deleted, or a run still being planned)."""
    if not isinstance(path, str):
        return path
    try:
        return read_token_info(path).contents
    except (DataError, OSError):
        return path


def meaning(key: str, value: Any) -> Any:
    """What a config value means for comparing runs: a token file's path is replaced by
    :func:`data_identity`, any other value is itself."""
    return data_identity(value) if key in TOKEN_FILES else value


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {key: meaning(key, value) for key, value in config.items()}


FOLLOWERS = {"optim.lr_min": "optim.lr_max"}
"""Keys that a search or ``--lr-scaling`` moves with another (the floor of the schedule keeps
its ratio to the peak): one that keeps the same ratio in every config is not a varied key of
its own, so that a table or legend does not split one series into one per value."""


def varied_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The flattened keys whose values are not the same in every config (bookkeeping aside, and
    a :data:`FOLLOWERS` key that only follows its leader).

    >>> varied_keys([{"optim.lr_max": 1, "run.name": "a"}, {"optim.lr_max": 2, "run.name": "b"}])
    ['optim.lr_max']
    >>> varied_keys([{"optim.lr_max": 1e-3, "optim.lr_min": 1e-4},
    ...              {"optim.lr_max": 3e-3, "optim.lr_min": 3e-4}])
    ['optim.lr_max']
    """
    configs = [_comparable(config) for config in configs]
    keys = sorted({key for config in configs for key in config})
    return [key for key in keys if not has_role(key, BOOKKEEPING)
            and len({json.dumps(config.get(key)) for config in configs}) > 1
            and not _follows(key, configs)]


def _follows(key: str, configs: Sequence[dict[str, Any]]) -> bool:
    """Whether ``key`` keeps one ratio to its leader in every config (to the 4 significant digits
    that searched and rescaled rates are written with)."""
    leader = FOLLOWERS.get(key)
    ratios = [config.get(key) / config[leader] for config in configs
              if isinstance(config.get(key), float | int) and config.get(leader)]
    return (leader is not None and len(ratios) == len(configs)
            and max(ratios) <= min(ratios) * (1 + 1e-3))


def differences(config: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The keys where ``config`` differs from ``base`` (bookkeeping aside, token files by what
    they hold), with ``config``'s values."""
    return {change.key: change.after
            for change in diff(base, config, ignoring=BOOKKEEPING, same=meaning)}


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
    return " ".join(f"{names[key]}={shown(config.get(key))}" for key in keys)


def shown(value: Any) -> str:
    """A config value for a table or a legend: a float to four significant digits (a swept rate
    rescaled by the batch size is 0.0035355339...), anything else as an override would say it.

    >>> shown(0.003535533905932738), shown(0.001), shown("rms")
    ('0.003536', '0.001', 'rms')
    """
    return f"{value:.4g}" if isinstance(value, float) else format_value(value)


def by_point(runs: Sequence[Run]) -> list[list[Run]]:
    """The runs grouped into points: runs whose configs differ only in ``train.seed`` are the
    seeds of one point (``lmlab sweep --seeds``); every other run is a point of its own. Groups
    keep the order in which their first run comes."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        rest = {key: value for key, value in _comparable(run.config).items()
                if key != SEED and not has_role(key, BOOKKEEPING)}
        groups.setdefault(json.dumps(rest, sort_keys=True), []).append(run)
    points: list[list[Run]] = []
    for group in groups.values():
        seeds = [run.config.get(SEED) for run in group]
        points += [group] if len(set(seeds)) == len(seeds) else [[run] for run in group]
    return sorted(points, key=lambda point: runs.index(point[0]))


def point_label(runs: Sequence[Run]) -> str:
    """A point's run name without its seed: ``lr_max-0.001`` for ``lr_max-0.001__seed-2``."""
    return re.sub(r"__seed-\d+$", "", runs[0].name)
