"""Reading a config: TOML files, ``section.key=value`` overrides, and one-line errors.

Override values are parsed as TOML values, so ``optim.lr_max=3e-3`` is a float and
``run.trackers=["wandb"]`` a list; :func:`format_value` writes a value back the same way.
"""

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from lmlab.config.presets import resolve_config
from lmlab.config.tables import Config
from lmlab.errors import ConfigError


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a TOML config (a file, or a preset's name: :func:`resolve_config`), apply
    ``key.sub=value`` overrides and validate the result.

    Override values are parsed as TOML values (``3e-3``, ``true``, ``["wandb"]``), falling back
    to a plain string (``run.name=my-run``); ``none`` means None.

    >>> cfg = load_config(None, ["data.train_path=t.bin", "data.valid_path=v.bin",
    ...                          "train.max_steps=10", "optim.lr_max=3e-3"])
    >>> cfg.optim.lr_max, cfg.max_steps
    (0.003, 10)
    """
    raw = read_toml(path) if path is not None else {}
    if isinstance(raw.get("config"), str):
        raise ConfigError(f"{path} is a sweep file (it names a base config): run it with "
                          f"`lmlab sweep {path}`, or give its base config")
    given = {apply_override(raw, item): item.strip() for item in overrides}
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        source = str(path) if path is not None else "overrides"
        raise ConfigError(_blamed(exc, source, given)) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict (a config or a sweep file, or the preset it names); a
    :class:`ConfigError` naming the file when it is missing or not valid TOML."""
    path = resolve_config(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:  # removed since resolve_config saw it
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a nested dict (parsed TOML, or a run's config.json) into a :class:`Config`."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_error(exc, Config)}") from None


def apply_override(raw: dict[str, Any], item: str) -> str:
    """Set ``section.key`` in ``raw`` from one ``section.key=value`` word; return the key."""
    key, sep, text = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name or "." in name:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    sections = section_fields()
    if section not in sections:
        raise ConfigError(f"unknown config section {section!r} in {item!r} "
                          f"(valid: {', '.join(sections)})")
    if name not in sections[section]:
        raise ConfigError(f"unknown config key '{key}' (valid {section} keys: "
                          f"{', '.join(sections[section])})")
    table = raw.setdefault(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"config section {section!r} must be a table")
    value = parse_value(text.strip())
    annotation = sections[section][name]
    if value is None and ("none" in get_args(annotation) or annotation is str):
        value = "none"  # a choice named "none" (model.norm=none) or a name, not an unset key
    table[name] = value
    return f"{section}.{name}"


def parse_value(text: str) -> Any:
    """An override value as TOML would read it, else the raw string; ``none`` is None.

    >>> parse_value("3e-3"), parse_value("true"), parse_value("my-run"), parse_value("none")
    (0.003, True, 'my-run', None)
    """
    if text.lower() in ("none", "null"):
        return None
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def format_value(value: Any) -> str:
    """A config value as a short, exact override value: the inverse of how overrides are read.

    >>> format_value(0.0003), format_value(True), format_value(None), format_value("rms")
    ('0.0003', 'true', 'none', 'rms')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def section_fields() -> dict[str, dict[str, Any]]:
    """Valid keys of each config table with their types, e.g. ``{"model": {"vocab_size": int,
    ...}, ...}``."""
    return {
        name: {key: sub.annotation for key, sub in field.annotation.model_fields.items()}  # type: ignore[union-attr]
        for name, field in Config.model_fields.items()
    }


def describe_error(exc: ValidationError, model: type[BaseModel]) -> str:
    """One line for a pydantic error in ``model`` (a :class:`Config`, or any model whose fields
    are plain values or tables of them): each problem with its dotted key and, for unknown keys,
    the valid ones."""
    return "; ".join(_problem(err, model) for err in _errors(exc))


def _errors(exc: ValidationError) -> list[Any]:
    """pydantic's errors, a number-or-``auto`` field's said as a number's (``train.batch_size``):
    the error of its ``auto`` branch left out, and the branch's name left out of the key."""
    last = [str((err["loc"] or ("",))[-1]) for err in exc.errors()]
    return [{**err, "loc": err["loc"][:-1]} if branch in ("int", "constrained-int") else err
            for err, branch in zip(exc.errors(), last, strict=True)
            if not branch.startswith("literal[")]


def _problem(err: Any, model: type[BaseModel]) -> str:
    """One problem of a pydantic error, with its dotted key."""
    loc = [str(part) for part in err["loc"]]
    key = ".".join(loc) or "config"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}' (valid: {', '.join(_valid_keys(model, loc))})"
    if err["type"] == "missing":
        return f"missing key '{key}'"
    if err["type"] == "value_error":  # our own validators name their keys
        return err["msg"].removeprefix("Value error, ")
    if err["type"] == "string_pattern_mismatch" and _field(model, loc) is not None:
        return (f"{key} {err.get('input')!r} is not valid: "
                f"{_field(model, loc).description}")  # type: ignore[union-attr]
    return f"{key}: {err['msg']} (got {err.get('input')!r})"


def _blamed(exc: ValidationError, source: str, given: dict[str, str]) -> str:
    """One line for a config read from ``source`` with overrides ``given`` (dotted key -> word):
    a problem with a key that an override set names the override, not the file
    (``override optim.lr_max=abc: Input should be a valid number...``); the rest name ``source``.
    """
    in_source, in_overrides = [], []
    for err in _errors(exc):
        loc = [str(part) for part in err["loc"]]
        words = [given[".".join(loc[:2])]] if ".".join(loc[:2]) in given else []
        if err["type"] == "value_error":  # a check across keys: the overrides of the keys named
            words = [word for key, word in given.items() if key in err["msg"]]
        if not words:
            in_source.append(_problem(err, Config))
        elif err["type"] == "string_pattern_mismatch" and _field(Config, loc) is not None:
            in_overrides.append(f"override {words[0]}: not valid: "
                                f"{_field(Config, loc).description}")  # type: ignore[union-attr]
        else:
            message = err["msg"].removeprefix("Value error, ")
            in_overrides.append(f"override{'s' if len(words) > 1 else ''} {' '.join(words)}: "
                                f"{message}")
    return "; ".join([f"{source}: {'; '.join(in_source)}"] * bool(in_source) + in_overrides)


def _valid_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The keys valid beside the unknown one at ``loc``: its table's, or the top level's, as a
    file writes them (a field's alias where it has one: a sweep file's ``list``)."""
    table = _field(model, loc[:-1]) if len(loc) > 1 else None
    inner = table.annotation if table is not None else None
    inner = next((arg for arg in get_args(inner)  # a table that may be left out: X | None
                  if isinstance(arg, type) and issubclass(arg, BaseModel)), inner)
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        model = inner
    return [field.alias or name for name, field in model.model_fields.items()]


def _field(model: type[BaseModel], loc: list[str]):
    """The pydantic field at a dotted location, or None when it is not a field of tables."""
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        field = fields[part]
        model = field.annotation  # type: ignore[assignment]
    return field
