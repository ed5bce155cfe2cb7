"""Run the `lmlab` command line in the test's own process, as a user would type it."""

import sys

import pytest

from lmlab.cli import main


def cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """Run ``lmlab ARGS`` (each made a string) in this process: (exit code, stdout, stderr)."""
    old_argv = sys.argv
    sys.argv = ["lmlab", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old_argv
    out, err = capsys.readouterr()
    return code, out, err
