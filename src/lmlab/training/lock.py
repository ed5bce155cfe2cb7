"""One writer per run directory: the lock a live training process holds on ``<run>/.lock``.

Two processes training into one run directory (a sweep re-run while the first still runs, a job
requeued while the old one lingers) would interleave its metrics, checkpoint and status. So the
process that trains holds an exclusive ``fcntl.flock`` on the run's lock file (Linux and macOS;
under torchrun, rank 0 for the whole job) and writes who it is into it; a second process stops
before writing anything, naming the holder. The operating system releases the lock when its
process dies, however it dies, so a lock left by a killed run never blocks a resume.
"""

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from lmlab.atomic import storage_errors
from lmlab.errors import RunInUseError

LOCK_FILE = ".lock"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the lock of ``run_dir`` for the body; :class:`RunInUseError` when a live process
    holds it, naming its pid, host and start time."""
    path = Path(run_dir) / LOCK_FILE
    created = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        file = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held for the body)
    try:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(f"{run_dir} is in use: {holder(file)} is training there (wait "
                                f"for it, or stop it; then resume)") from None
        with storage_errors(path):
            file.seek(0)
            file.truncate()
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}, file)
            file.flush()
        yield
    finally:
        file.close()  # closing releases the lock
        if created and [p.name for p in path.parent.iterdir()] == [LOCK_FILE]:
            # bad input stopped the run before it wrote anything: leave no trace of it
            path.unlink()
            for folder in created:
                folder.rmdir()


def held_by(run_dir: str | Path) -> str | None:
    """Who holds the lock of ``run_dir`` now (``pid 123 on host since ...``), or None."""
    path = Path(run_dir) / LOCK_FILE
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder(file)
        return None


def holder(file: IO[str]) -> str:
    """What the lock file's holder wrote about itself."""
    file.seek(0)
    try:
        who = json.loads(file.read())
        return f"pid {who['pid']} on {who['host']} since {who['since']}"
    except (json.JSONDecodeError, KeyError, TypeError):
        return "another process"
