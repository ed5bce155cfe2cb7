"""`lmlab ... --help`: every command's help says all of its text, wrapped to the terminal, with
examples that parse; choice flags list their values, and shared options read the same."""

import shlex
from itertools import pairwise
from typing import get_args

import pytest
import typer

from lmlab.cli import app
from lmlab.compute import GPUS
from tests.helpers.lmlab_cli import cli
from tests.helpers.readme import parse


def _commands(group, words: tuple[str, ...] = ()):
    """Every command and subcommand (typer's groups are not ``click.Group``s: it bundles its own
    click), with the words that name it."""
    for name, command in group.commands.items():
        yield (*words, name), command
        if hasattr(command, "commands"):
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
    assert _flowing(COMMANDS[words].help.replace("\b", "")) in _flowing(out)
    # Click fills lines up to 78 characters: a word that would have fit is a kept line break.
    for paragraph in _text_paragraphs(out):
        for line, after in pairwise(paragraph.splitlines()):
            assert len(line) + 1 + len(after.split()[0]) > 78, f"broken early: {line!r}"


def test_command_list_shows_whole_summaries(capsys, monkeypatch):
    """`lmlab --help` lists each command with the first sentence of its help, not cut short."""
    monkeypatch.setenv("COLUMNS", "80")
    for words in [(), *(words for words, command in COMMANDS.items()
                        if hasattr(command, "commands"))]:
        code, out, _ = cli(capsys, *words, "--help")
        listed = out[out.index("Commands:"):]
        assert code == 0 and "..." not in listed, listed


def _text_paragraphs(help_text: str) -> list[str]:
    """The paragraphs between the usage line and the first table (arguments, options)."""
    paragraphs = help_text.split("\n\n")[1:]
    tables = [i for i, p in enumerate(paragraphs) if p.endswith(":") or ":\n" in p[:20]]
    return paragraphs[: tables[0] if tables else None]


def _examples(help_text: str) -> list[list[str]]:
    """The command lines of a help's ``Examples:`` block, continued lines joined, as words."""
    block = help_text.split("Examples:\n", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_command_shows_examples_that_parse(words):
    """Each command's --help ends its text with 1-3 real command lines of that command, and the
    CLI parses each (every option exists, every choice is one of its values)."""
    examples = _examples(COMMANDS[words].help or "")
    assert 1 <= len(examples) <= 3
    for example in examples:
        old_name = words == ("tokenize",)  # shows the new name's examples
        assert example[:len(words) + 1] == ["lmlab", *(("tokenizer", "encode") if old_name
                                                        else words)][:len(words) + 1]
        parse(example)


@pytest.mark.parametrize(("words", "args", "flag", "bad", "choices"), [
    (("export",), ["runs/x"], "--format", "onnx", ["lmlab", "hf"]),
    (("tokenizer", "export"), ["tok", "--out", "o"], "--format", "spm", ["hf"]),
    (("plot",), ["runs/x"], "--x", "epoch", ["step", "tokens", "wall_time"]),
    (("plot",), ["runs/x"], "--panels", "grid", ["same", "separate"]),
    (("sweep",), ["tinystories-cpu"], "--lr-scaling", "cubic", ["sqrt", "linear"]),
], ids=lambda value: " ".join(value) if isinstance(value, tuple) else None)
def test_a_choice_flag_lists_its_values_and_refuses_others(capsys, monkeypatch, tmp_path, words,
                                                           args, flag, bad, choices):
    """Every choice is an enum: --help shows its values, and another value is a usage error
    (exit 2) that names them, before the command runs."""
    monkeypatch.chdir(tmp_path)  # nothing may be written
    code, out, _ = cli(capsys, *words, "--help")
    assert code == 0 and f"{flag} <{'|'.join(choices)}>" in out
    code, _, err = cli(capsys, *words, *args, flag, bad)
    assert code == 2 and f"'{bad}' is not one of " + ", ".join(f"'{c}'" for c in choices) in err
    assert list(tmp_path.iterdir()) == []


def test_choices_agree_with_the_library():
    """The CLI names some choices again so that starting it imports neither torch nor pydantic:
    they must stay the library's."""
    from lmlab.cli.estimate import GpuName
    from lmlab.cli.plot import Panels, XAxis
    from lmlab.cli.sweep import LrScaling
    from lmlab.experiments import sweep
    from lmlab.experiments.plot import plot_runs
    from lmlab.training.rundir import X_KEYS

    assert list(XAxis) == list(X_KEYS) and list(GpuName) == list(GPUS)
    assert tuple(LrScaling) == get_args(sweep.LrScaling)
    assert tuple(Panels) == get_args(plot_runs.__annotations__["panels"])


@pytest.mark.parametrize("flag", ["--device", "--tokenizer"])
def test_a_shared_option_reads_the_same_in_every_command(flag):
    """--device of eval and generate, --tokenizer of a trained model's commands: one help each."""
    helps = {words: [p.help for p in command.params if flag in p.opts]
             for words, command in COMMANDS.items()}
    helps = {words: found[0] for words, found in helps.items() if found}
    if flag == "--tokenizer":  # the run's tokenizer (optional) or the one to encode with
        helps = {words: text for words, text in helps.items() if "default" in text}
    assert len(helps) >= 2 and len(set(helps.values())) == 1, helps


def test_tokenize_is_the_old_name_of_tokenizer_encode(capsys, monkeypatch):
    """`lmlab tokenize` still runs, hidden from the list, its help naming the new command."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli(capsys, "--help")
    assert code == 0 and "tokenize " not in out and "tokenizer" in out
    code, out, _ = cli(capsys, "tokenize", "--help")
    assert code == 0 and "Old name of `lmlab tokenizer encode`" in out
    assert COMMANDS[("tokenize",)].hidden and not COMMANDS[("tokenizer", "encode")].hidden
