"""The presets that ship with lmlab: config and sweep files in the package's ``presets/`` folder,
found by name from any working directory.

A preset's name is its file's stem (``tinystories-cpu``, ``lr_sweep``), unique across
``presets/`` and ``presets/experiments/``. Wherever a config or sweep file is read, an existing
file is used as given; otherwise a preset name, with or without ``.toml``, or an old spelling
from the source checkout (``configs/tinystories-cpu.toml``, ``configs/experiments/lr_sweep.toml``)
names the packaged file, so that old commands keep working from anywhere.
"""

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePath

from lmlab.errors import ConfigError

PRESETS = Path(__file__).resolve().parents[1] / "presets"
"""The packaged presets (``lmlab/presets/``, shipped as package data)."""
OLD_FOLDERS = (("configs",), ("configs", "experiments"))
"""Where the presets lived in the source checkout: paths into them still name a preset."""


@dataclass(frozen=True)
class Preset:
    """One packaged preset: a training config, or a sweep file (it names a base ``config``)."""

    name: str
    path: Path
    kind: str
    """``config`` or ``sweep``."""
    description: str
    """The first line of the file's header comment."""
    variants: tuple[str, ...]
    """A sweep file's ``[variant.NAME]`` tables."""


@cache
def all_presets() -> dict[str, Preset]:
    """Every packaged preset by name: the configs (those of ``presets/`` before those of
    ``experiments/``), then the sweep files, each group by name."""
    found = [_read(path) for path in [*PRESETS.glob("*.toml"), *PRESETS.glob("*/*.toml")]]
    found.sort(key=lambda preset: (preset.kind != "config", preset.path.parent != PRESETS,
                                   preset.name))
    return {preset.name: preset for preset in found}


def preset_names() -> list[str]:
    """The names of the packaged presets, configs first (see :func:`all_presets`)."""
    return list(all_presets())


def find_preset(name: str | PurePath) -> Preset | None:
    """The preset that ``name`` names: ``tinystories-cpu``, ``tinystories-cpu.toml`` or an old
    path into the checkout's ``configs/`` (``../configs/experiments/lr_sweep.toml``); else None.

    >>> find_preset("configs/tinystories-cpu.toml").name, find_preset("my/own.toml")
    ('tinystories-cpu', None)
    """
    path = PurePath(name)
    folders = tuple(part for part in path.parts[:-1] if part not in (".", ".."))
    in_old_folder = not folders or any(folders[-len(old):] == old for old in OLD_FOLDERS)
    if path.suffix not in ("", ".toml") or not in_old_folder:
        return None
    return all_presets().get(path.stem)


def resolve_config(path_or_name: str | PurePath) -> Path:
    """The file a config or sweep argument means: an existing file as given, else the packaged
    preset it names; a one-line :class:`ConfigError` listing the presets when neither."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    preset = find_preset(path)
    if preset is None:
        raise ConfigError(f"config file {path} does not exist "
                          f"(presets: {', '.join(preset_names())})")
    return preset.path


def preset_path(name: str) -> Path:
    """The packaged file of a preset (never a file of the working directory); a one-line
    :class:`ConfigError` listing the presets when ``name`` names none."""
    preset = find_preset(name)
    if preset is None:
        raise ConfigError(f"no preset {name!r} (presets: {', '.join(preset_names())})")
    return preset.path


def _read(path: Path) -> Preset:
    """A preset file's name, kind, description and variants."""
    text = path.read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    header = next((line for line in text.splitlines() if line.startswith("#")), "")
    kind = "sweep" if isinstance(raw.get("config"), str) else "config"
    return Preset(path.stem, path, kind, header.lstrip("#").strip(),
                  tuple(raw.get("variant", {})))
