"""What a sweep is: a base config, overrides for every point, and a grid or list of points.

::

    base config + overrides ─► points (grid product × list) ─► runs/<sweep>/<point>/ ─► summary

A :class:`Sweep` comes from ``lmlab sweep``'s options or from a sweep file (a preset such as
``lr_sweep`` in ``lmlab/presets/experiments/``, or a file of one's own);
:mod:`lmlab.experiments.planning` turns it into validated points,
:mod:`lmlab.experiments.runner` runs them, :mod:`lmlab.experiments.summary` tabulates how they
ended.
"""

import itertools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lmlab.config import (
    describe_error,
    find_preset,
    format_value,
    parse_value,
    read_toml,
    resolve_config,
)
from lmlab.errors import ConfigError
from lmlab.experiments.compare import short_names

LrScaling = Literal["sqrt", "linear"]


class SearchSpec(BaseModel):
    """A key searched on a log scale instead of listed (``[search]`` in a sweep file,
    ``--search`` on the command line): :mod:`lmlab.experiments.search` decides its values."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="The dotted config key searched, e.g. ``optim.lr_max``.")
    start: float = Field(gt=0, description="The first value: it and its two neighbours run "
                         "first.")
    factor: float = Field(3.0, gt=1, description="The ratio between neighbouring values.")
    max_points: int = Field(7, ge=3, description="The cap on the values tried per series "
                            "(each combination of the other varied keys).")
    edge: bool = Field(False, description="Also climb until a value diverges (the edge of "
                       "stability).")
    refine: bool = Field(False, description="Once bracketed, add the geometric midpoint of the "
                         "best value and its better neighbour.")


class Sweep(BaseModel):
    """What to sweep: everything ``lmlab sweep`` takes, from its options or a sweep file.

    A sweep file's top-level keys are these fields (``list`` for :attr:`points`), besides its
    ``[variant.NAME]`` tables; unknown keys and bad values are errors that name the key, as in
    the config tables. Build one with :meth:`from_file` or :meth:`merge` to get them as one-line
    :class:`ConfigError`\\ s."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    config: Path = Field(description="The base training config (TOML).")
    name: str | None = Field(None, description="Folder under the base config's "
                             "``run.runs_dir`` (default: the config's file name).")
    overrides: list[str] = Field(default_factory=list,
                                 description="``key=value`` words applied to every point.")
    grid: dict[str, list[str]] = Field(
        default_factory=dict, description="Each key's values (written as :func:`format_value` "
        "writes them); the points are their Cartesian product.")
    points: list[list[str]] = Field(
        default_factory=list, alias="list", description="Explicit points, each a list of "
        "``key=value`` words (crossed with the grid); ``list`` in a sweep file.")
    fixed_tokens: bool = Field(False, description="Keep the base config's token budget at every "
                               "point (steps = tokens / tokens per step).")
    lr_scaling: LrScaling | None = Field(None, description="Rescale ``optim.lr_max`` (and "
                                         "``optim.lr_min`` with it) with the tokens per step "
                                         "relative to the base config.")
    seeds: int = Field(1, description="Runs per point, with ``train.seed`` = the base config's "
                       "seed + 0, 1, ...: points are compared over them by a t-test, "
                       "paired by seed index.")
    description: str = Field("", description="What the sweep is for: the report shows it "
                             "above the sweep's table.")
    search: SearchSpec | None = Field(None, description="A key searched on a log scale per "
                                      "series instead of listed (``[search]`` in a file).")

    @field_validator("grid", mode="before")
    @classmethod
    def _grid_values(cls, grid: Any) -> Any:
        """Each key's values as override text, so a file's ``1e-3`` and ``--grid``'s ``1e-3``
        name the same run."""
        if not isinstance(grid, dict):
            return grid  # pydantic says it is not a table
        return {key: [format_value(v) for v in _non_empty(values, f"grid.{key}")]
                for key, values in grid.items()}

    @field_validator("points", mode="before")
    @classmethod
    def _points_non_empty(cls, points: Any) -> Any:
        if isinstance(points, list):
            for point in points:
                _non_empty(point, "list", "a non-empty list of key=value words")
        return points

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_whole(cls, seeds: Any) -> Any:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds must be a whole number >= 1, got {seeds!r}")
        return seeds

    @classmethod
    def from_file(cls, path: str | Path, variant: str | None = None) -> "Sweep":
        """Read a sweep TOML file or preset (``lr_sweep``); ``variant`` applies its
        ``[variant.NAME]`` table on top: its ``config``, ``fixed_tokens`` and ``lr_scaling``
        replace the top level's, its ``overrides`` are appended, its ``grid`` and ``search``
        keys replace.
        The base config is the file of that path relative to the sweep file or, when there is
        none, the preset it names (so a sweep file copied elsewhere still finds its base);
        ``name`` defaults to the file's stem."""
        path = resolve_config(path)
        raw = read_toml(path)
        variants = raw.pop("variant", {})
        if variant is not None:
            if variant not in variants:
                raise ConfigError(f"{path} has no [variant.{variant}] table (it has: "
                                  f"{', '.join(variants) or 'none'})")
            extra = dict(variants[variant])
            raw["overrides"] = [*raw.get("overrides", []), *extra.pop("overrides", [])]
            raw["grid"] = {**raw.get("grid", {}), **extra.pop("grid", {})}
            if isinstance(raw.get("search"), dict) and isinstance(extra.get("search"), dict):
                raw["search"] = {**raw["search"], **extra.pop("search")}
            raw.update(extra)
        raw.setdefault("name", path.stem)
        sweep = _validated(raw, str(path))
        return sweep.model_copy(update={"config": _base_config(path, sweep.config)})

    def merge(self, **changes: Any) -> "Sweep":
        """This sweep with command-line additions, validated: grid keys replace, overrides and
        points append, other fields replace unless None."""
        grid = {**self.grid, **changes.pop("grid", {})}
        overrides = [*self.overrides, *changes.pop("overrides", [])]
        points = [*self.points, *changes.pop("points", [])]
        replaced = {key: value for key, value in changes.items() if value is not None}
        return _validated({**self.model_dump(), "grid": grid, "overrides": overrides,
                           "points": points, **replaced}, "sweep")

    def searched(self, text: str | None = None, cap: int | None = None, edge: bool = False,
                 refine: bool = False) -> dict[str, Any] | None:
        """The search table with ``lmlab sweep``'s ``--search`` (:func:`parse_search`) and
        its cap and switches on top of this sweep's (for :meth:`merge`)."""
        table = parse_search(text) if text is not None else (
            self.search.model_dump() if self.search is not None else None)
        if table is None:
            if cap is not None or edge or refine:
                raise ConfigError("--search-cap, --search-edge and --search-refine need a "
                                  "search: give --search optim.lr_max=3e-3:x3")
            return None
        extra = {"max_points": cap, "edge": edge or None, "refine": refine or None}
        return {**table, **{key: value for key, value in extra.items() if value is not None}}

    def combinations(self) -> list[list[str]]:
        """Each point's override words: every explicit point crossed with the grid's product
        (with a :attr:`search`, each is a series whose searched values are added to it)."""
        if not self.grid and not self.points and self.search is None:
            raise ConfigError("nothing to sweep: give --grid key=v1,v2 or --list 'key=v ...'")
        grid = [[f"{key}={value}" for value in values] for key, values in self.grid.items()]
        return [[*listed, *combo] for listed in self.points or [[]]
                for combo in itertools.product(*grid)]


def parse_search(text: str) -> dict[str, Any]:
    """``--search`` words as a search table (a factor of 3 unless ``:xF`` gives one).

    >>> parse_search("optim.lr_max=3e-3:x2")
    {'key': 'optim.lr_max', 'start': 0.003, 'factor': 2.0}
    """
    key, sep, rest = text.partition("=")
    start, colon, factor = rest.partition(":")
    try:
        if not sep or not key.strip() or (colon and not factor.startswith("x")):
            raise ValueError
        return {"key": key.strip(), "start": float(start),
                "factor": float(factor[1:]) if colon else 3.0}
    except ValueError:
        raise ConfigError(f"--search {text!r} is not of the form section.key=START or "
                          "section.key=START:xFACTOR, e.g. optim.lr_max=3e-3:x3") from None


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


def _base_config(sweep_file: Path, config: Path) -> Path:
    """A sweep file's base config: the file beside it, else the preset it names, else the path
    beside it (whose reading then says it does not exist)."""
    beside = sweep_file.parent / config
    preset = None if beside.is_file() else find_preset(config)
    return preset.path if preset is not None else beside


def _validated(raw: dict[str, Any], source: str) -> Sweep:
    """A :class:`Sweep` from a dict of its fields; a one-line :class:`ConfigError` naming
    ``source`` and the key, worded as the config tables' errors."""
    try:
        return Sweep.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_error(exc, Sweep)}") from None


def _non_empty(value: Any, key: str, what: str = "a non-empty list") -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key} must be {what}, got {value!r}")
    return value
