"""The commands of the README and the guides, as the tests read them: ```bash blocks (of a whole
file or one ``## `` section), the inline commands of a table, and a command parsed by the CLI
without running it."""

import re
import shlex
from pathlib import Path

import typer.main

from lmlab.cli import app
from tests.helpers.paths import REPO

README = REPO / "README.md"
FENCE = re.compile(r"^\s*(```|~~~)")
SHELL_BREAKS = {"|", "||", "&&", ";", "&"}


def section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of a Markdown text."""
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def bash_blocks(heading: str | None = None, path: Path = README) -> list[str]:
    """The bodies of the ```bash blocks of a Markdown file, or of its ``## heading`` section."""
    text = path.read_text(encoding="utf-8")
    if heading is not None:
        text = section(text, heading)
    blocks, body, inside = [], [], False
    for line in text.splitlines():
        if not inside and re.match(r"^\s*```bash\s*$", line):
            inside, body = True, []
        elif inside and FENCE.match(line):
            inside = False
            blocks.append("\n".join(body) + "\n")
        elif inside:
            body.append(line)
    return blocks


def commands(block: str) -> list[list[str]]:
    """Each command of a block as words: continued lines joined, comments dropped."""
    lines = block.replace("\\\n", " ").splitlines()
    return [words for line in lines if (words := shlex.split(line, comments=True))]


def table_commands(heading: str, path: Path = README) -> list[list[str]]:
    """The ``lmlab ...`` commands written as inline code in the table rows of a section, in
    order, as words (``\\|`` in a cell is a ``|``)."""
    found = []
    for line in section(path.read_text(encoding="utf-8"), heading).splitlines():
        if line.startswith("|"):
            for code in re.findall(r"`(lmlab [^`]+)`", line):
                found.append(shlex.split(code.replace("\\|", "|")))
    return found


def first_command(words: list[str]) -> list[str]:
    """The words of the first command of a shell line: environment assignments before it
    dropped, and what follows a redirection, pipe or ``&&`` cut off."""
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]
    for i, word in enumerate(words):
        if word in SHELL_BREAKS or re.match(r"^(\d*>>?|&>|<)$|^\d*>>?[\w./&]", word):
            return words[:i]
    return words


def as_lmlab(words: list[str]) -> list[str]:
    """``torchrun ... -m lmlab ARGS`` as the ``lmlab ARGS`` that each process runs."""
    if words and words[0] == "torchrun":
        return ["lmlab", *words[words.index("lmlab") + 1:]]
    return words


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
