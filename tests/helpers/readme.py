"""The README's ```bash blocks and their commands, as the README tests read them, and a command
parsed by the CLI without running it."""

import re
import shlex

import typer.main

from lmlab.cli import app
from tests.helpers.paths import REPO


def bash_blocks(section: str) -> list[str]:
    """The ```bash blocks of the README section with this ``## `` heading."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    body = readme.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", body, flags=re.DOTALL)


def commands(block: str) -> list[list[str]]:
    """Each command of a block as words: continued lines joined, comments dropped."""
    lines = block.replace("\\\n", " ").splitlines()
    return [words for line in lines if (words := shlex.split(line, comments=True))]


def parse(words: list[str]) -> None:
    """Parse ``lmlab ARGS`` as the CLI would, without running it: every subcommand and option must
    exist and every value be valid (click raises otherwise)."""
    assert words[0] == "lmlab"
    command = typer.main.get_command(app)
    context = command.make_context("lmlab", words[1:])
    args = words[1:]
    while hasattr(command, "resolve_command"):  # a group: descend into the named subcommand
        name, command, args = command.resolve_command(context, args)
        context = command.make_context(name, args, parent=context)
