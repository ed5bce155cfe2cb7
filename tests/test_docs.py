"""The guides in docs/ stay true: every relative link lands on a file (and a heading), every
`lmlab ...` command in a ```bash block parses with the CLI, and no guide sends a reader to a
path outside the repository. Nothing runs: these read text."""

import re
import shlex
import unicodedata
from pathlib import Path

import pytest

from tests.helpers.paths import REPO
from tests.helpers.readme import FENCE, as_lmlab, bash_blocks, commands, first_command, parse

DOCS = REPO / "docs"
MARKDOWN = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
"""Every file whose links must resolve."""
WITH_COMMANDS = [*sorted(DOCS.glob("*.md")), DOCS / "experiments" / "README.md"]
"""Every file whose ```bash blocks must parse."""
GUIDES = [DOCS / name for name in ("README.md", "tokenizer.md", "training.md", "model.md",
                                   "multi-gpu.md", "gpu.md", "huggingface.md")]
GUIDES += [DOCS / "experiments" / "README.md"]
"""The guides by job: a student runs what they say from the repository root."""
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", flags=re.MULTILINE)


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def prose(text: str) -> str:
    """``text`` without its fenced code blocks and inline code spans: the part whose links and
    headings render."""
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            kept.append(line)
    return re.sub(r"(`+).*?\1", "", "\n".join(kept))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: markup and punctuation dropped, lowercase, spaces to ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return "".join("-" if ch == " " else ch for ch in text
                   if ch in " -_" or unicodedata.category(ch)[0] in "LMN")


def anchors(path: Path) -> set[str]:
    """Every ``#anchor`` that a link into ``path`` may name (repeated headings get -1, -2, ...)."""
    text = path.read_text(encoding="utf-8")
    found: set[str] = set(re.findall(r"""<a\s+(?:name|id)=["']([^"']+)["']""", text))
    seen: dict[str, int] = {}
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The targets of every Markdown link and image in ``path``, outside code."""
    text = prose(path.read_text(encoding="utf-8"))
    return LINK.findall(text) + REFERENCE.findall(text)


def is_external(target: str) -> bool:
    return re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE) is not None


@pytest.mark.parametrize("path", MARKDOWN, ids=rel)
def test_every_relative_link_resolves(path):
    """A relative link names a file of the repository, and its ``#anchor`` a heading there."""
    broken = []
    for target in links(path):
        if is_external(target):  # http(s), mailto: not checked here
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no such file {resolved}")
        elif REPO.resolve() not in (resolved, *resolved.parents):
            broken.append(f"{target}: outside the repository")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading #{anchor} in {rel(resolved)}")
    assert not broken, f"{rel(path)}:\n" + "\n".join(broken)


DOC_COMMANDS = [(path, words) for path in WITH_COMMANDS if path.is_file()
                for block in bash_blocks(path=path) for line in commands(block)
                if (words := as_lmlab(first_command(line)))]
LMLAB_COMMANDS = [(path, words) for path, words in DOC_COMMANDS if words[0] == "lmlab"]


def test_the_guides_have_commands():
    """The block reader finds the guides' commands (a reader that finds none passes nothing)."""
    per_file = {rel(path) for path, _ in LMLAB_COMMANDS}
    assert {"docs/tokenizer.md", "docs/training.md", "docs/multi-gpu.md", "docs/gpu.md",
            "docs/huggingface.md", "docs/experiments/README.md"} <= per_file
    assert ["lmlab", "presets", "tinystories-cpu"] in [w for _, w in LMLAB_COMMANDS]
    assert first_command(["WANDB_MODE=offline", "lmlab", "presets", "x", ">", "my.toml"]) == \
        ["lmlab", "presets", "x"]


@pytest.mark.parametrize(("path", "words"), LMLAB_COMMANDS,
                         ids=[f"{rel(p)}: {shlex.join(w)}" for p, w in LMLAB_COMMANDS])
def test_every_guide_command_parses(path, words):
    """Each command names real subcommands and options with valid values (nothing runs)."""
    parse(words)


@pytest.mark.parametrize(("path", "words"),
                         [(p, w) for p, w in DOC_COMMANDS if w[0] in ("bash", "python")
                          and len(w) > 1 and w[1].endswith((".sh", ".py"))],
                         ids=lambda x: rel(x) if isinstance(x, Path) else shlex.join(x))
def test_every_script_a_guide_runs_exists(path, words):
    assert (REPO / words[1]).is_file(), f"{rel(path)}: {shlex.join(words)}: no {words[1]}"


@pytest.mark.parametrize("path", GUIDES, ids=rel)
def test_no_guide_names_a_path_outside_the_repository(path):
    """Commands run from the repository root: ``../`` (say, the team's ``../shared/data``) is a
    folder a reader does not have. A relative link may climb, as long as it lands inside."""
    text = path.read_text(encoding="utf-8")
    for target in links(path):
        if not is_external(target):
            resolved = (path.parent / target.partition("#")[0]).resolve()
            if REPO.resolve() in (resolved, *resolved.parents):
                text = text.replace(f"]({target})", "]()")
    outside = re.findall(r"(?<![\w.])\.\./\S*", text) + re.findall(r"/work/\S*", text)
    assert not outside, f"{rel(path)} names paths outside the repository: {outside}"
