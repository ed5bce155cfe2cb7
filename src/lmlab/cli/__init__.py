"""`lmlab` command line: a thin shell over the library.

Each command lives in a small module that registers itself on the shared typer ``app``; ``main``
turns any :class:`~lmlab.errors.LmlabError` into a one-line ``error: ...`` and a non-zero exit.

A command imports the library modules it runs inside its body: torch and matplotlib take seconds
to import, and ``lmlab --help``, ``lmlab tokenizer encode`` or ``lmlab data download`` need
neither (``tests/test_tokenize_cli.py`` checks that ``lmlab tokenizer encode`` imports neither).
The options several commands share are defined once, in :mod:`lmlab.cli.options`.
"""

import os
import sys

from lmlab.cli import (
    data,  # noqa: F401  (registers `data download`)
    estimate,  # noqa: F401  (registers `estimate`)
    export,  # noqa: F401  (registers `export`)
    generate,  # noqa: F401  (registers `generate`)
    plot,  # noqa: F401  (registers `plot`)
    presets,  # noqa: F401  (registers `presets`)
    quickstart,  # noqa: F401  (registers `quickstart`)
    report,  # noqa: F401  (registers `report`)
    runs,  # noqa: F401  (registers `runs`)
    sweep,  # noqa: F401  (registers `sweep`)
    tokenizer,  # noqa: F401  (registers `tokenizer train/encode/export`, `tokenize`)
    train,  # noqa: F401  (registers `train`, `eval`)
)
from lmlab.cli.app import app
from lmlab.errors import DistributedError, LmlabError


def main() -> None:
    """Entry point of the `lmlab` console script."""
    try:
        app()
    except LmlabError as exc:
        where = ""
        if "WORLD_SIZE" in os.environ:  # under torchrun, say which rank failed
            from lmlab.training.distributed import world_from_env

            world = world_from_env()
            where = f"rank {world.rank}: " if world.size > 1 else ""
        print(f"error: {where}{exc}", file=sys.stderr)
        if where and not isinstance(exc, DistributedError):  # this rank failed first
            _exit_now_if_in_a_group()
        raise SystemExit(1) from None


def _exit_now_if_in_a_group() -> None:
    """End a failed rank at once while its process group is still live: the group is left up
    after a failure (:func:`lmlab.training.distributed.distributed`), and destroying it at
    interpreter exit, while a peer is still inside a collective, can abort the process with
    SIGABRT, so torchrun reported the signal instead of the rank's exit code 1 (seen in CI).
    Only the rank that failed first exits this way: one stopped by its peer's failure
    (:class:`~lmlab.errors.DistributedError`) unwinds as usual, so it is still running when
    torchrun sees the first rank's exit and names that rank as the cause."""
    from torch import distributed as dist

    if dist.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


__all__ = ["app", "main"]
