"""`lmlab` command line: a thin shell over the library.

Each command lives in a small module that registers itself on the shared typer ``app``; ``main``
turns any :class:`~lmlab.errors.LmlabError` into a one-line ``error: ...`` and a non-zero exit.
"""

import sys

from lmlab.cli import (
    data,  # noqa: F401  (registers `data download`)
    export,  # noqa: F401  (registers `export`)
    generate,  # noqa: F401  (registers `generate`)
    plot,  # noqa: F401  (registers `plot`)
    quickstart,  # noqa: F401  (registers `quickstart`)
    report,  # noqa: F401  (registers `report`)
    sweep,  # noqa: F401  (registers `sweep`)
    tokenizer,  # noqa: F401  (registers `tokenizer train`, `tokenize`)
    train,  # noqa: F401  (registers `train`, `eval`)
)
from lmlab.cli.app import app
from lmlab.distributed import world_from_env
from lmlab.errors import LmlabError


def main() -> None:
    """Entry point of the `lmlab` console script."""
    try:
        app()
    except LmlabError as exc:
        world = world_from_env()  # under torchrun, say which rank failed
        where = f"rank {world.rank}: " if world.size > 1 else ""
        print(f"error: {where}{exc}", file=sys.stderr)
        raise SystemExit(1) from None


__all__ = ["app", "main"]
