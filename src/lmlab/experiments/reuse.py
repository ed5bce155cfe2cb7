"""Never train the same run twice: a sweep's point whose defining config
(:func:`lmlab.config.run_identity`) matches a complete run anywhere under the runs folder takes
that run's results instead of training again.

A run may be reused when it finished or diverged (a diverged run of the identical config is an
equally valid result of it), its metrics are there and no process holds its lock. A run bounded
by ``train.time_budget_s`` is never reused: how far it got depends on the machine and its load,
so a second run of that config is not a copy of the first. Token files are compared by what their
sidecars say they hold (:func:`lmlab.experiments.compare.data_identity`), not by how their paths
are spelt.

The copy is the point's own run directory, indistinguishable from one it trained: its
``config.json`` is the point's config (its name and place), its ``env.json`` the original's with
this sweep's working directory and ``reused_from``; the metrics, status and other small files are
copied, checkpoints and model files hard-linked (copied across file systems; the trainer replaces
a checkpoint by renaming, so neither run can change the other's). It is built in a hidden folder
beside the point and renamed into place: the point is either untouched or complete.
"""

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmlab.atomic import atomic_write_json, storage_errors
from lmlab.config import Config, run_identity
from lmlab.errors import DataError
from lmlab.experiments.compare import TOKEN_FILES, data_identity
from lmlab.experiments.planning import Point
from lmlab.training.lock import held_by
from lmlab.training.rundir import RunDir, find_runs

REUSABLE = ("finished", "diverged")
"""Statuses of a run whose results a point may take."""
LINKED = (".pt", ".safetensors")
"""Files hard-linked rather than copied: checkpoints and model files, the large ones."""


class RunIndex:
    """Every run directory under a folder (the runs folder, the base config's ``run.runs_dir``),
    by its defining config. Each ``config.json`` is read once, when a point is first looked up
    (a sweep whose points have all started reads none), so that matching every round of a
    sweep's points costs one lookup each however many runs there are."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._identities: dict[str, Any] = {}  # a token file's real path -> what it holds
        self._runs: dict[str, list[Path]] | None = None

    @property
    def runs(self) -> dict[str, list[Path]]:
        """The run directories by :meth:`identity`: a copy still being built is none."""
        if self._runs is None:
            self._runs = {}
            for path in find_runs(self.folder) if self.folder.is_dir() else []:
                if any(part.startswith(".") for part in path.relative_to(self.folder).parts):
                    continue
                try:
                    config = RunDir(path).read_config()
                except (DataError, OSError):
                    continue
                run = config.get("run", {})
                started_in = Path(run.get("runs_dir", "")) / run.get("name", path.name)
                data = RunDir(path).locate_data(config.get("data", {}), started_in)
                self._runs.setdefault(self.identity({**config, "data": data}), []).append(path)
        return self._runs

    def identity(self, config: Config | dict[str, Any]) -> str:
        """:func:`~lmlab.config.run_identity` with each token file read as what it holds."""
        return run_identity(config, same=self._meaning)

    def _meaning(self, key: str, value: Any) -> Any:
        if key not in TOKEN_FILES or not isinstance(value, str):
            return value
        real = os.path.realpath(value)
        if real not in self._identities:
            self._identities[real] = data_identity(real)
        return self._identities[real]

    def source(self, point: Point) -> Path | None:
        """A complete run that no process is training, with the point's defining config, that is
        not the point's own run directory; None when there is none."""
        own = point.run_dir.root.resolve()
        for path in self.runs.get(self.identity(point.config), []):
            if path.resolve() != own and reusable(path):
                return path
        return None


def reusable(path: Path) -> bool:
    """Whether the run at ``path`` is complete (finished or diverged, with metrics) and idle."""
    run = RunDir(path)
    return (run.status in REUSABLE and run.metrics.is_file() and run.metrics.stat().st_size > 0
            and held_by(path) is None)


def reuse_runs(index: RunIndex, points: Sequence[Point],
               on_event: Callable[[str], None] = lambda message: None) -> list[Point]:
    """Give every point that has not started and matches a complete run of ``index`` a copy of
    that run; return the points still to train."""
    todo = []
    for point in points:
        source = source_for(index, point)
        if source is not None and copy_run(source, point.config):
            on_event(f"{point.name}: reused {source} (same run; --no-reuse trains it again)")
            continue
        todo.append(point)
    return todo


def source_for(index: RunIndex, point: Point) -> Path | None:
    """The run :func:`reuse_runs` copies ``point`` from (what ``--dry-run`` counts as free):
    one of ``index`` when the point has not started and has no time budget; else None."""
    if not _untouched(point) or point.config.train.time_budget_s is not None:
        return None
    return index.source(point)


def _untouched(point: Point) -> bool:
    """Whether nothing has been written for the point yet (a run that started resumes instead,
    and a folder in use is skipped by the runner)."""
    root = point.run_dir.root
    return not root.exists() or (root.is_dir() and not any(root.iterdir()))


def copy_run(source: Path, config: Config) -> bool:
    """Make ``config``'s run directory a copy of the run at ``source`` (see the module's
    docstring); False, leaving no trace, when something else has written there meanwhile."""
    target = RunDir(config.run_dir)
    building = target.root.with_name(f".{target.root.name}.reuse-{os.getpid()}")
    try:
        with storage_errors(building):
            shutil.rmtree(building, ignore_errors=True)  # left by a copy that was killed
            building.mkdir(parents=True)
            _copy_files(source, building)
        copy = RunDir(building)
        atomic_write_json(copy.env, {**_environment(source), "cwd": os.getcwd(),
                                     "reused_from": str(source.resolve())})
        copy.write_config(config)  # last: until it is there, no one reads the folder as a run
        try:
            if target.root.is_dir():
                target.root.rmdir()  # empty, or it would not be reused
            building.rename(target.root)
        except OSError:  # another process took the point since it was found untouched
            return False
        return True
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _environment(source: Path) -> dict[str, Any]:
    """The original's ``env.json``, or nothing where it is missing or damaged."""
    try:
        env = RunDir(source).read_env()
    except (OSError, ValueError):
        return {}
    return env if isinstance(env, dict) else {}


def _copy_files(source: Path, building: Path) -> None:
    """Every file of the run but its config, environment, lock and temporary files: the large
    ones hard-linked where the file system allows it, the rest copied."""
    skipped = {RunDir(source).config, RunDir(source).env}
    for file in sorted(source.rglob("*")):
        relative = file.relative_to(source)
        if (file in skipped or not file.is_file()
                or any(part.startswith(".") for part in relative.parts)):
            continue
        destination = building / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if file.suffix in LINKED:
            try:
                os.link(file, destination)
                continue
            except OSError:  # another file system, or links not allowed: copy instead
                pass
        shutil.copy2(file, destination)
