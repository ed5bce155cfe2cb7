"""Experiment tracking: the run directory's files, and trackers that receive the metrics.

Every run writes ``metrics.jsonl`` (one JSON object per line: ``step``, ``tokens``,
``wall_time_s`` and the ``train/*`` and ``val/*`` metrics measured at that step); wandb and
TensorBoard are optional extras that get the same numbers. A tracker is anything with
``log(metrics, step)`` and ``close()``, so tests and sweeps can pass their own.
"""

import json
import os
import platform
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

import lmlab
from lmlab import jsonio
from lmlab.atomic import atomic_write_json, atomic_write_text
from lmlab.config import Config
from lmlab.errors import ConfigError

STATUSES = ("running", "finished", "diverged", "interrupted", "failed")


class Tracker(Protocol):
    """Receives the metrics of each logged step."""

    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class RunDir:
    """The files of one run: ``config.json``, ``env.json``, ``metrics.jsonl``, ``status``,
    ``checkpoints/last.pt``. Everything but the metrics log is written atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.env = self.root / "env.json"
        self.metrics = self.root / "metrics.jsonl"
        self.status_file = self.root / "status"
        self.checkpoint = self.root / "checkpoints" / "last.pt"

    def exists(self) -> bool:
        """Whether a run has already written here."""
        return self.config.exists() or self.metrics.exists()

    def write_config(self, config: Config) -> None:
        atomic_write_json(self.config, config.model_dump(mode="json"))

    def write_env(self, device: torch.device) -> None:
        atomic_write_json(self.env, environment(device))

    def set_status(self, status: str) -> None:
        """``running`` / ``finished`` / ``diverged`` / ``interrupted`` (resumable) / ``failed``."""
        assert status in STATUSES, status
        atomic_write_text(self.status_file, status + "\n")

    @property
    def status(self) -> str | None:
        return self.status_file.read_text().strip() if self.status_file.exists() else None

    def read_metrics(self) -> list[dict[str, Any]]:
        """The logged records, skipping a line cut short by a crash."""
        return _read_jsonl(self.metrics)


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


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(jsonio.metric_record(line))
        except json.JSONDecodeError:  # the last line of a killed run
            continue
    return records


class JsonlTracker:
    """Appends one JSON object per logged step to ``metrics.jsonl``, flushed as it goes.

    ``keep_until`` (on resume) first drops records logged after the checkpoint's step, so the
    file reads as if the run had never stopped.
    """

    def __init__(self, path: str | Path, keep_until: int | None = None) -> None:
        path = Path(path)
        if keep_until is not None:
            kept = [r for r in _read_jsonl(path) if r.get("step", 0) <= keep_until]
            atomic_write_text(path, "".join(jsonio.dumps(r) + "\n" for r in kept))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a" if keep_until is not None else "w", encoding="utf-8")

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self._file.write(jsonio.dumps({"step": step, **metrics}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class WandbTracker:
    """Logs to Weights & Biases (``WANDB_MODE=offline`` works without network). A resumed run
    continues the same wandb run, whose id is kept in the run directory."""

    def __init__(self, config: Config, run_dir: Path) -> None:
        wandb = _import_extra("wandb", "wandb")
        id_file = run_dir / "wandb_id"
        if not id_file.exists():
            atomic_write_text(id_file, uuid.uuid4().hex[:12])
        self._run = wandb.init(project=config.run.wandb_project, name=config.run.name,
                               id=id_file.read_text().strip(), resume="allow", dir=run_dir,
                               config=config.model_dump(mode="json"))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self._run.log(dict(metrics), step=step)

    def close(self) -> None:
        self._run.finish()


class TensorBoardTracker:
    """Writes TensorBoard scalars to ``<run>/tensorboard``."""

    def __init__(self, run_dir: Path) -> None:
        _import_extra("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _import_extra(module: str, extra: str) -> Any:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"run.trackers includes {module!r} but it is not installed: "
                          f'pip install "lmlab[{extra}]"') from None


class Trackers:
    """Fans each record out to every tracker of the run."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    @classmethod
    def for_run(cls, config: Config, run: RunDir, resume_step: int | None) -> "Trackers":
        """metrics.jsonl plus the extras named in ``run.trackers``."""
        extras: list[Tracker] = [
            WandbTracker(config, run.root) if name == "wandb" else TensorBoardTracker(run.root)
            for name in config.run.trackers
        ]  # first, so a missing package stops the run before metrics.jsonl is touched
        return cls([JsonlTracker(run.metrics, keep_until=resume_step), *extras])

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log(metrics, step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
