"""What a sweep is: a base config, overrides for every point, and a grid or list of points.

::

    base config + overrides ─► points (grid product × list) ─► runs/<sweep>/<point>/ ─► summary

A :class:`Sweep` comes from ``lmlab sweep``'s options or from a sweep file
(``configs/experiments/*.toml``); :mod:`lmlab.experiments.planning` turns it into validated
points, :mod:`lmlab.experiments.runner` runs them, :mod:`lmlab.experiments.summary` tabulates
how they ended.
"""

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from lmlab.config import format_value, parse_value, read_toml
from lmlab.errors import ConfigError
from lmlab.experiments.compare import short_names

LrScaling = Literal["sqrt", "linear"]
FILE_KEYS = ("config", "name", "overrides", "grid", "list", "fixed_tokens", "lr_scaling",
             "seeds", "description")
"""The top-level keys of a sweep file (besides its ``[variant.NAME]`` tables)."""


@dataclass
class Sweep:
    """What to sweep: everything ``lmlab sweep`` takes, from its options or a sweep file."""

    config: Path
    """The base training config (TOML)."""
    name: str | None = None
    """Folder under the base config's ``run.runs_dir`` (default: the config's file name)."""
    overrides: list[str] = field(default_factory=list)
    """``key=value`` words applied to every point."""
    grid: dict[str, list[str]] = field(default_factory=dict)
    """Each key's values; the points are their Cartesian product."""
    points: list[list[str]] = field(default_factory=list)
    """Explicit points, each a list of ``key=value`` words (crossed with the grid)."""
    fixed_tokens: bool = False
    """Keep the base config's token budget at every point (steps = tokens / tokens per step)."""
    lr_scaling: LrScaling | None = None
    """Rescale ``optim.lr_max`` with the tokens per step relative to the base config."""
    seeds: int = 1
    """Runs per point, with ``train.seed`` = the base config's seed + 0, 1, ...: the spread over
    them is the noise a difference between points must beat."""
    description: str = ""
    """What the sweep is for: the report shows it above the sweep's table."""

    @classmethod
    def from_file(cls, path: str | Path, variant: str | None = None) -> "Sweep":
        """Read a sweep TOML file (see ``configs/experiments/``); ``variant`` applies its
        ``[variant.NAME]`` table on top: its ``config``, ``fixed_tokens`` and ``lr_scaling``
        replace the top level's, its ``overrides`` are appended, its ``grid`` keys replace."""
        path = Path(path)
        raw = read_toml(path)
        variants = raw.pop("variant", {})
        if variant is not None:
            if variant not in variants:
                raise ConfigError(f"{path} has no [variant.{variant}] table (it has: "
                                  f"{', '.join(variants) or 'none'})")
            extra = dict(variants[variant])
            raw["overrides"] = [*raw.get("overrides", []), *extra.pop("overrides", [])]
            raw["grid"] = {**raw.get("grid", {}), **extra.pop("grid", {})}
            raw.update(extra)
        unknown = sorted(set(raw) - set(FILE_KEYS))
        if unknown:
            raise ConfigError(f"{path}: unknown sweep key(s) {', '.join(unknown)} "
                              f"(valid: {', '.join(sorted(FILE_KEYS))}, variant)")
        if "config" not in raw:
            raise ConfigError(f"{path}: a sweep file needs config = \"<base config TOML>\"")
        return cls(
            config=path.parent / raw["config"],
            name=raw.get("name", path.stem),
            overrides=[str(word) for word in raw.get("overrides", [])],
            grid={key: [format_value(v) for v in _as_list(values, f"{path}: grid.{key}")]
                  for key, values in raw.get("grid", {}).items()},
            points=[[str(word) for word in _as_list(point, f"{path}: list")]
                    for point in raw.get("list", [])],
            fixed_tokens=raw.get("fixed_tokens", False),
            lr_scaling=raw.get("lr_scaling"),
            seeds=raw.get("seeds", 1),
            description=raw.get("description", ""),
        )

    def merge(self, **changes: Any) -> "Sweep":
        """This sweep with command-line additions: grid keys replace, overrides and points
        append, other fields replace unless None."""
        grid = {**self.grid, **changes.pop("grid", {})}
        overrides = [*self.overrides, *changes.pop("overrides", [])]
        points = [*self.points, *changes.pop("points", [])]
        return replace(self, grid=grid, overrides=overrides, points=points,
                       **{key: value for key, value in changes.items() if value is not None})

    def combinations(self) -> list[list[str]]:
        """Each point's override words: every explicit point crossed with the grid's product."""
        if not self.grid and not self.points:
            raise ConfigError("nothing to sweep: give --grid key=v1,v2 or --list 'key=v ...'")
        grid = [[f"{key}={value}" for value in values] for key, values in self.grid.items()]
        return [[*listed, *combo] for listed in self.points or [[]]
                for combo in itertools.product(*grid)]


def is_sweep_file(path: str | Path) -> bool:
    """Whether a TOML file is a sweep file (it names a base ``config``) rather than a config."""
    return isinstance(read_toml(path).get("config"), str)


def point_name(words: Sequence[str]) -> str:
    """A run name from a point's varied values, each written as :func:`format_value` writes it,
    so ``--grid optim.lr_max=1e-3`` and a sweep file's ``1e-3`` name the same run.

    >>> point_name(["optim.lr_max=1e-3", "train.batch_size=32", "model.norm=none"])
    'lr_max-0.001__batch_size-32__norm-none'
    """
    keys = [word.partition("=")[0].strip() for word in words]
    names = short_names(keys)
    parts = [f"{names[key]}-{format_value(parse_value(word.partition('=')[2].strip()))}"
             for key, word in zip(keys, words, strict=True)]
    return re.sub(r"[^\w.\-]", "_", "__".join(parts))


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list, got {value!r}")
    return value
