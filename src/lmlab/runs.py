"""Run directories read back: config, metrics, status and the numbers a summary table shows.

The sweep summary, the plots and the report all look at runs the same way, and all need to say
*what differs* between runs (the legend of a plot, the columns of a table), so that lives here:
configs are flattened to dotted keys (``optim.lr_max``) and compared key by key.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmlab.errors import DataError
from lmlab.tracking import RunDir

X_KEYS = {"step": "step", "tokens": "tokens", "wall_time": "wall_time_s"}
"""The x axes a learning curve can use, and the metrics.jsonl field each reads."""
IGNORED_SECTIONS = ("run.",)
"""Config keys that name or place a run rather than change what it learns."""


@dataclass
class Run:
    """One run directory as written by the trainer (possibly still running)."""

    path: Path
    config: dict[str, Any]
    """The resolved config, flattened to dotted keys: ``{"optim.lr_max": 0.001, ...}``."""
    status: str
    """``finished`` / ``diverged`` / ``running`` / ``interrupted`` / ``failed``, or ``pending``
    when the run has not written its status yet."""
    records: list[dict[str, Any]]

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        """Read ``path``; a :class:`DataError` when it holds no ``config.json``."""
        run = RunDir(path)
        if not run.config.is_file():
            raise DataError(f"{run.root} is not a run directory (no config.json)")
        try:
            config = json.loads(run.config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{run.config} is not valid JSON: {exc}") from None
        return cls(run.root, flatten(config), run.status or "pending", run.read_metrics())

    @property
    def name(self) -> str:
        return self.path.name

    def series(self, metric: str, x: str = "step") -> tuple[list[float], list[float]]:
        """The ``(xs, ys)`` of every record that measured ``metric``; ``x`` is a key of
        :data:`X_KEYS`. Non-finite values (a diverging loss) become NaN, which plots as a gap."""
        field = X_KEYS[x]
        points = [(r[field], r[metric]) for r in self.records if metric in r and field in r]
        return ([p[0] for p in points],
                [p[1] if math.isfinite(p[1]) else math.nan for p in points])

    def summary(self) -> dict[str, Any]:
        """Final and best val loss, the last val bpb, steps, tokens, wall time and status."""
        val = [r["val/loss"] for r in self.records if "val/loss" in r]
        finite = [v for v in val if math.isfinite(v)]
        bpb = [r["val/bpb"] for r in self.records if "val/bpb" in r]
        last = self.records[-1] if self.records else {}
        return {
            "run": self.name,
            "status": self.status,
            "final_val_loss": val[-1] if val else None,
            "best_val_loss": min(finite) if finite else None,
            "val_bpb": bpb[-1] if bpb else None,
            "steps": last.get("step", 0),
            "tokens": last.get("tokens", 0),
            "wall_time_s": last.get("wall_time_s", 0.0),
        }


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables to dotted keys.

    >>> flatten({"model": {"d_model": 64}, "optim": {"lr_max": 0.001}})
    {'model.d_model': 64, 'optim.lr_max': 0.001}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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


def format_value(value: Any) -> str:
    """A config value as a short, exact text (also a valid override value).

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


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory (a folder with ``config.json``) at or below ``root``, sorted."""
    root = Path(root)
    return sorted(path.parent for path in root.rglob("config.json")
                  if path.parent.name != "checkpoints")
