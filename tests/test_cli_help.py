"""`lmlab ... --help`: every command's help says all of its text, wrapped to the terminal."""

from itertools import pairwise

import click
import pytest
import typer

from lmlab.cli import app
from tests.lmlab_cli import cli


def _commands(group: click.Group, words: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*words, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*words, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))


def _flowing(text: str) -> str:
    """``text`` as one line: a line break (or one after a hyphen) is just a space."""
    return " ".join(text.split()).replace("- ", "-")


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_help_is_whole_and_fits_the_terminal(capsys, monkeypatch, words):
    """The text of a docstring reflows to the terminal's width: none of it is lost (markdown
    would drop `runs/<name>/`), and no line keeps the docstring's own breaks past the width."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli(capsys, *words, "--help")
    assert code == 0
    assert max(map(len, out.splitlines())) <= 80
    assert _flowing(COMMANDS[words].help) in _flowing(out)
    # Click fills lines up to 78 characters: a word that would have fit is a kept line break.
    for paragraph in _text_paragraphs(out):
        for line, after in pairwise(paragraph.splitlines()):
            assert len(line) + 1 + len(after.split()[0]) > 78, f"broken early: {line!r}"


def test_command_list_shows_whole_summaries(capsys, monkeypatch):
    """`lmlab --help` lists each command with the first sentence of its help, not cut short."""
    monkeypatch.setenv("COLUMNS", "80")
    for words in [(), *(words for words, command in COMMANDS.items()
                        if isinstance(command, click.Group))]:
        code, out, _ = cli(capsys, *words, "--help")
        listed = out[out.index("Commands:"):]
        assert code == 0 and "..." not in listed, listed


def _text_paragraphs(help_text: str) -> list[str]:
    """The paragraphs between the usage line and the first table (arguments, options)."""
    paragraphs = help_text.split("\n\n")[1:]
    tables = [i for i, p in enumerate(paragraphs) if p.endswith(":") or ":\n" in p[:20]]
    return paragraphs[: tables[0] if tables else None]
