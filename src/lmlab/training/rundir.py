"""The run directory, ``runs/<name>/``: the one home of its layout, its writes and its reads.

::

    config.json     the resolved config                      (written when the run starts)
    env.json        versions, hardware, git commit, argv and the working directory the config's
                    relative paths are relative to            (written when the run starts)
    metrics.jsonl   one JSON object per logged step          (appended by the trackers)
    status          running / finished / diverged / interrupted / failed (a diverged or failed
                    run adds a second line: which rule fired at which step, or what failed)
    checkpoints/last.pt                                       (lmlab.training.checkpoint)
    train.log       a sweep subprocess's output               (lmlab.experiments.runner)
    samples.txt     samples a person saved; the report shows them

:class:`RunDir` names the paths and writes the files (every one but the metrics log atomically);
:class:`Run` is a run directory read back, for the sweep summary, the plots and the report.
"""

import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lmlab
from lmlab import jsonio
from lmlab.atomic import atomic_write_json, atomic_write_text
from lmlab.config import Config, config_from_dict, flatten
from lmlab.errors import ConfigError, DataError

STATUSES = ("running", "finished", "diverged", "interrupted", "failed")
OUT_OF_GPU_MEMORY = "out of GPU memory"
"""How the reason of a run that failed for lack of device memory begins."""
OUT_OF_MEMORY = "out of memory"
"""The status a sweep's summary shows for such a run (:func:`verdict`)."""
X_KEYS = {"step": "step", "tokens": "tokens", "wall_time": "wall_time_s"}
"""The x axes a learning curve can use, and the metrics.jsonl field each reads."""


class RunDir:
    """The paths of one run directory, and the writes the trainer makes to it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.env = self.root / "env.json"
        self.metrics = self.root / "metrics.jsonl"
        self.status_file = self.root / "status"
        self.checkpoint = self.root / "checkpoints" / "last.pt"
        self.log = self.root / "train.log"
        self.samples = self.root / "samples.txt"

    def exists(self) -> bool:
        """Whether a run has already written here."""
        return self.config.exists() or self.metrics.exists()

    def start(self, config: Config, device: torch.device) -> None:
        """Write what a training session starts with: the resolved config, the environment,
        and the ``running`` status."""
        self.write_config(config)
        self.write_env(device)
        self.set_status("running")

    def write_config(self, config: Config) -> None:
        atomic_write_json(self.config, config.model_dump(mode="json"))

    def write_env(self, device: torch.device) -> None:
        atomic_write_json(self.env, environment(device))

    def set_status(self, status: str, reason: str | None = None) -> None:
        """``running`` / ``finished`` / ``diverged`` / ``interrupted`` (resumable) / ``failed``,
        with the ``reason`` on a second line (why a run diverged or failed)."""
        assert status in STATUSES, status
        atomic_write_text(self.status_file, "".join(f"{line}\n" for line in (status, reason)
                                                     if line is not None))

    @property
    def status(self) -> str | None:
        """The last status written, or None before the run started."""
        return self._status_lines()[0] if self.status_file.exists() else None

    @property
    def reason(self) -> str | None:
        """Why the run diverged or failed (the status file's second line), or None."""
        lines = self._status_lines()
        return lines[1] if len(lines) > 1 else None

    def _status_lines(self) -> list[str]:
        if not self.status_file.exists():
            return []
        return self.status_file.read_text(encoding="utf-8").strip().splitlines() or [""]

    def read_config(self) -> dict[str, Any]:
        """The resolved config as nested dicts, keys added to lmlab since the run was written at
        their defaults (so an older run compares equal to a new one of the same settings); a
        :class:`DataError` when there is none."""
        if not self.config.is_file():
            raise DataError(f"{self.root} is not a run directory (no config.json)")
        try:
            raw = json.loads(self.config.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{self.config} is not valid JSON: {exc}") from None
        try:
            return config_from_dict(raw).model_dump(mode="json")
        except ConfigError:  # a key lmlab no longer has: compare what was written
            return raw

    def read_env(self) -> dict[str, Any]:
        """What ``env.json`` records (:func:`environment`), or nothing when it is missing."""
        return json.loads(self.env.read_text(encoding="utf-8")) if self.env.is_file() else {}

    def locate(self, path: str | Path, run_dir: str | Path) -> Path:
        """Where a path of the run's config lies, whichever folder asks: a relative path (as the
        user gave it, relative to the folder the run was started in) is tried in that folder
        (``cwd`` in ``env.json``), then in the one the run directory's own place implies
        (``runs/x``, the config's ``run_dir``, found at ``/a/runs/x`` was started in ``/a``: the
        whole project moved), then in the current one. The first that exists is returned as an
        absolute path, else the first tried (which an error then names)."""
        path = Path(path)
        if path.is_absolute():
            return path
        folders = [Path(cwd)] if isinstance(cwd := self._read_cwd(), str) else []
        root, relative = Path(os.path.abspath(self.root)), Path(os.path.normpath(run_dir))
        tail = len(relative.parts)
        if not relative.is_absolute() and root.parts[-tail:] == relative.parts:
            folders.append(Path(*root.parts[:-tail]))
        tried = [Path(os.path.normpath(folder / path)) for folder in [*folders, Path.cwd()]]
        return next((file for file in tried if file.exists()), tried[0])

    def locate_data(self, data: dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
        """A config's ``data`` table with each token file's path found by :meth:`locate`."""
        return {key: str(self.locate(value, run_dir))
                if key.endswith("_path") and isinstance(value, str) else value
                for key, value in data.items()}

    def _read_cwd(self) -> Any:
        try:
            return self.read_env().get("cwd")
        except (OSError, ValueError, AttributeError):  # a damaged env.json records nothing
            return None

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` (see :func:`read_metrics`)."""
        return read_metrics(self.metrics)

    def last_metrics(self) -> dict[str, float]:
        """The last logged value of each metric (``train/loss``, ``val/bpb``...)."""
        metrics: dict[str, float] = {}
        for record in self.read_metrics():
            metrics.update({key: value for key, value in record.items() if "/" in key})
        return metrics


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics log (a ``null`` metric as NaN), skipping a line cut short by a
    crash; none when there is no log yet."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(jsonio.metric_record(line))
        except json.JSONDecodeError:  # the last line of a killed run
            continue
    return records


def environment(device: torch.device) -> dict[str, Any]:
    """What produced a run, so a result can be reproduced: versions, hardware, source commit."""
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine())
    return {
        "lmlab": lmlab.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
        "argv": sys.argv,
        "cwd": os.getcwd(),
    }


def _git_commit() -> str | None:
    """The commit of the lmlab source tree, when it is a git checkout (with ``+dirty``)."""
    source = Path(lmlab.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=source, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty.strip() else "")


@dataclass
class Run:
    """One run directory read back (possibly still running)."""

    path: Path
    config: dict[str, Any]
    """The resolved config, flattened to dotted keys: ``{"optim.lr_max": 0.001, ...}``."""
    status: str
    """``finished`` / ``diverged`` / ``running`` / ``interrupted`` / ``failed``, or ``pending``
    when the run has not written its status yet."""
    records: list[dict[str, Any]]
    reason: str | None = None
    """Why the run diverged (which rule, at which step) or failed, when it did."""

    @classmethod
    def load(cls, path: str | Path) -> "Run":
        """Read ``path``; a :class:`DataError` when it holds no ``config.json``."""
        run = RunDir(path)
        return cls(run.root, flatten(run.read_config()), run.status or "pending",
                   run.read_metrics(), run.reason)

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
            "status": verdict(self.status, self.reason),
            "final_val_loss": val[-1] if val else None,
            "best_val_loss": min(finite) if finite else None,
            "val_bpb": bpb[-1] if bpb else None,
            "steps": last.get("step", 0),
            "tokens": last.get("tokens", 0),
            "wall_time_s": last.get("wall_time_s", 0.0),
        }


def verdict(status: str, reason: str | None) -> str:
    """A run's status as a sweep shows it: ``out of memory`` for a run that failed for lack of
    device memory (its reason says so), else the status itself.

    >>> verdict("failed", "out of GPU memory at batch 64, context 256"), verdict("failed", None)
    ('out of memory', 'failed')
    """
    if status == "failed" and reason is not None and reason.startswith(OUT_OF_GPU_MEMORY):
        return OUT_OF_MEMORY
    return status


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory (a folder with ``config.json``) at or below ``root``, sorted; not a
    folder inside one (a Hugging Face export, ``hf/``, has a ``config.json`` too)."""
    found = sorted(path.parent for path in Path(root).rglob("config.json"))
    runs: list[Path] = []
    for path in found:  # sorted: a run comes before the folders inside it
        if not any(path.is_relative_to(run) for run in runs[-1:]):
            runs.append(path)
    return runs


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a run directory that training wrote: its ``config.json`` beside a
    ``status`` or ``metrics.jsonl`` (what other tools' folders with a ``config.json`` lack)."""
    run = RunDir(path)
    return run.config.is_file() and (run.status_file.is_file() or run.metrics.is_file())


def enclosing_run(path: str | Path) -> Path | None:
    """The run directory that ``path`` is or lies in, if any."""
    path = Path(os.path.abspath(path))
    return next((folder for folder in (path, *path.parents) if is_run_dir(folder)), None)


def check_place(root: str | Path) -> None:
    """Refuse a run directory ``root`` that would share a folder with another run or a sweep: one
    inside another run's directory, a sweep's own folder, a folder of other runs, or a folder in
    a sweep's (beside its points, as one of them) that ``sweep.json`` does not name."""
    root = Path(root)
    outer = enclosing_run(root.parent)
    if outer is not None:
        raise ConfigError(f"run directory {root} would lie inside the run directory {outer}: "
                          "choose another run.runs_dir or run.name")
    if (root / "sweep.json").is_file():
        raise ConfigError(f"run directory {root} is the folder of a sweep (it holds sweep.json): "
                          "choose another run.name")
    if root.is_dir() and not is_run_dir(root) and any(
            is_run_dir(child) for child in root.iterdir() if child.is_dir()):
        raise ConfigError(f"run directory {root} holds other runs: choose another run.name")
    sweep = root.parent / "sweep.json"
    if sweep.is_file():
        try:
            points = {point["name"] for point in json.loads(sweep.read_text())["points"]}
        except (OSError, ValueError, KeyError, TypeError):
            points = set()
        if root.name not in points:
            raise ConfigError(f"run directory {root} would lie in the folder of the sweep "
                              f"{root.parent} without being one of its points: choose another "
                              "run.runs_dir")
