"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Every writer goes to a temporary file in the destination's folder (same filesystem, so the final
``os.replace`` is an atomic rename), is flushed to disk, and only then takes the real name.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmlab import jsonio
from lmlab.errors import StorageError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it vanishes.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "x.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "x.txt").read_text()
    'hello'
    """
    path = Path(path)
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        with storage_errors(path):
            yield tmp
            # mkstemp makes 0600, and a writer may re-create the file (safetensors does): give
            # the result what open() would have given
            os.chmod(tmp, 0o666 & ~_umask())
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def storage_errors(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into a one-line :class:`StorageError`
    that names the file and the cause: ``no space left on device writing runs/x/metrics.jsonl``.
    """
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        cause = (exc.strerror or type(exc).__name__).lower()
        raise StorageError(f"{cause} writing {path}") from None


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (non-finite numbers as ``null``)."""
    atomic_write_text(path, jsonio.dumps(obj, indent=2) + "\n")
