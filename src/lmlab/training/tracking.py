"""Experiment tracking: trackers that receive each logged step's metrics.

Every run writes ``metrics.jsonl`` (one JSON object per line: ``step``, ``tokens``,
``wall_time_s`` and the ``train/*`` and ``val/*`` metrics measured at that step); wandb,
TensorBoard and trackio are optional extras that get the same numbers. A tracker is anything with
``log(metrics, step)`` and ``close()``, so tests and sweeps can pass their own.
"""

import contextlib
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from lmlab import jsonio
from lmlab.atomic import atomic_write_json, atomic_write_text, storage_errors
from lmlab.config import Config, flatten
from lmlab.errors import ConfigError
from lmlab.training.rundir import RunDir, read_metrics


class Tracker(Protocol):
    """Receives the metrics of each logged step."""

    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class JsonlTracker:
    """Appends one JSON object per logged step to ``metrics.jsonl``, flushed as it goes.

    ``keep_until`` (on resume) first drops records logged after the checkpoint's step, so the
    file reads as if the run had never stopped.
    """

    def __init__(self, path: str | Path, keep_until: int | None = None) -> None:
        self.path = path = Path(path)
        if keep_until is not None:
            kept = [r for r in read_metrics(path) if r.get("step", 0) <= keep_until]
            atomic_write_text(path, "".join(jsonio.dumps(r) + "\n" for r in kept))
        with storage_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a" if keep_until is not None else "w", encoding="utf-8")

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        with storage_errors(self.path):  # a line cut short is skipped on reading
            self._file.write(jsonio.dumps({"step": step, **metrics}) + "\n")
            self._file.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a write that failed already said why
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


class TrackioTracker:
    """Logs to trackio's local store (``trackio show`` serves it as a dashboard; ``TRACKIO_DIR``
    moves the store). The project is the folder that holds the run, so a sweep's points are one
    project, compared on one page. A resumed run continues the same trackio run (its project,
    name and id are kept in ``<run>/trackio.json``); a fresh start is a new one. How the run
    ended (and why it diverged or failed) closes it as an alert on the dashboard."""

    def __init__(self, config: Config, run: RunDir, resumed: bool) -> None:
        trackio = _import_extra("trackio", "trackio")
        self._alert_level = trackio.AlertLevel
        kept_file, self._run_dir = run.root / "trackio.json", run
        kept = _read_kept(kept_file) if resumed else None
        project = kept["project"] if kept else trackio_project(config)
        self._run = trackio.init(
            project=project, name=kept["name"] if kept else config.run.name,
            config=flatten(config.model_dump(mode="json")), resume="allow" if kept else "never",
            embed=False, auto_log_cpu=False, auto_log_gpu=False)
        atomic_write_json(kept_file, {"project": project, "name": self._run.name,
                                       "id": self._run.id})

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """The metrics as they are; the counters (``tokens``, ``wall_time_s``...) as
        ``progress/...``, a section of their own below the losses on the dashboard."""
        self._run.log({name if "/" in name else f"progress/{name}": value
                       for name, value in metrics.items()}, step=step)

    def close(self) -> None:
        status, reason = self._run_dir.status or "running", self._run_dir.reason
        levels = {"finished": "INFO", "interrupted": "WARN", "running": "WARN"}
        self._run.alert(title=f"run {status}", text=reason,
                        level=self._alert_level[levels.get(status, "ERROR")])
        self._run.finish()


def trackio_project(config: Config) -> str:
    """The trackio project of a run: the name of the folder that holds it (a sweep's folder,
    ``quickstart``, or ``runs``)."""
    return config.run_dir.resolve().parent.name


def _read_kept(path: Path) -> dict[str, str] | None:
    """The trackio run a run directory logged to, or None (none yet, or a damaged file)."""
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        return kept if {"project", "name"} <= kept.keys() else None
    except (OSError, ValueError, AttributeError):
        return None


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
        makers = {"wandb": lambda: WandbTracker(config, run.root),
                  "tensorboard": lambda: TensorBoardTracker(run.root),
                  "trackio": lambda: TrackioTracker(config, run, resume_step is not None)}
        extras: list[Tracker] = [makers[name]() for name in config.run.trackers]
        # first, so a missing package stops the run before metrics.jsonl is touched
        return cls([JsonlTracker(run.metrics, keep_until=resume_step), *extras])

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for tracker in self.trackers:
            tracker.log(metrics, step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
