"""docs/architecture.md stays true: it names every module; imports only point down its layers."""

import ast
import io
import itertools
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "lmlab"
MAP = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
MODULES = sorted(path.relative_to(SRC).as_posix() for path in SRC.rglob("*.py"))
LAYERS = [  # the layer table of docs/architecture.md, first layer first
    ("errors.py", "text.py", "jsonio.py", "atomic.py", "progress.py", "device.py", "config/"),
    ("datasets.py", "tokenizer/"),
    ("tokens.py",),
    ("nn/", "loss.py", "optim/", "compute.py", "random_steps.py"),
    ("training/", "weights.py"),
    ("sampling.py", "generate.py", "inference.py", "hf.py"),
    ("experiments/", "quickstart.py"),
    ("cli/", "__main__.py", "__init__.py"),
]


def layer_of(module: str) -> int:
    """The layer of a module path relative to ``src/lmlab`` (``training/loop.py`` -> 4)."""
    for layer, members in enumerate(LAYERS):
        if any(module == m or (m.endswith("/") and module.startswith(m)) for m in members):
            return layer
    raise AssertionError(f"{module} is in no layer of docs/architecture.md")


def lmlab_imports(module: str) -> set[str]:
    """The lmlab modules ``module`` imports anywhere (lazy imports in functions too), as paths
    relative to ``src/lmlab``."""
    tree = ast.parse((SRC / module).read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    paths = set()
    for name in names:
        if name == "lmlab" or not name.startswith("lmlab."):
            continue
        rel = name.removeprefix("lmlab.").replace(".", "/")
        if (SRC / f"{rel}.py").is_file():
            paths.add(f"{rel}.py")
        elif (SRC / rel / "__init__.py").is_file():
            paths.add(f"{rel}/__init__.py")
    return paths


def test_the_map_names_every_module() -> None:
    named = set(re.findall(r"`(?!tests/|bench/)([\w/]+\.py)`", MAP))  # source, not tests
    missing = [module for module in MODULES if module not in named]
    assert not missing, f"docs/architecture.md does not name {missing}"
    gone = sorted(name for name in named if name not in MODULES)
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


def test_the_layer_table_is_the_one_in_the_map() -> None:
    for layer, members in enumerate(LAYERS[:-1]):
        row = next(line for line in MAP.splitlines() if line.startswith(f"| {layer}. "))
        assert re.findall(r"`([\w/.]+)`", row.split("|")[2]) == list(members), row


@pytest.mark.parametrize("module", MODULES)
def test_modules_stay_short(module: str) -> None:
    """One job per module: none passes 350 lines, and the loop stays one page."""
    limit = 300 if module == "training/loop.py" else 350
    lines = len((SRC / module).read_text(encoding="utf-8").splitlines())
    assert lines <= limit, f"{module} has {lines} lines (at most {limit}): split its jobs"


@pytest.mark.parametrize("module", MODULES)
def test_imports_only_point_down(module: str) -> None:
    upward = [imported for imported in lmlab_imports(module)
              if layer_of(imported) > layer_of(module)]
    assert not upward, f"{module} (layer {layer_of(module)}) imports {upward} from above"


@pytest.mark.parametrize("module", [m for m in MODULES
                                    if m.startswith("tokenizer/") or m == "tokens.py"])
def test_text_and_token_files_need_no_torch(module: str) -> None:
    source = (SRC / module).read_text(encoding="utf-8")
    assert not re.search(r"^\s*(import torch|from torch)", source, re.MULTILINE), module


def test_the_checker_sees_an_upward_import() -> None:
    """The layer check itself can fail: the model importing the trainer would be caught."""
    assert layer_of("training/loop.py") > layer_of("nn/transformer.py")
    assert "training/rundir.py" in lmlab_imports("weights.py")


MEASUREMENT = re.compile(r"\b20\d\d-\d\d|\btok/s|\btokens/s")
"""A date or a throughput: measurements live in docs/benchmarks.md, which the code links to."""


def _prose(text: str, first_line: int) -> list[tuple[int, str]]:
    """The lines of a docstring with their line numbers, doctest examples and their expected
    output aside (that output is the program's, e.g. a progress line that prints ``tok/s``)."""
    lines, in_example = [], False
    for offset, line in enumerate(text.splitlines()):
        stripped = line.strip()
        in_example = stripped.startswith(">>>") or (in_example and bool(stripped))
        if not in_example:
            lines.append((first_line + offset, line))
    return lines


def measurements_in(source: str) -> list[tuple[int, str]]:
    """``(line, text)`` of each docstring line (module, class, function and attribute ones) and
    comment of ``source`` that quotes a date or a tokens/s; string literals that code prints are
    not looked at."""
    prose = []
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node, clean=False)
            if docstring is not None:
                prose += _prose(docstring, body[0].lineno)
        for before, statement in itertools.pairwise(body):  # attribute docstrings
            if (isinstance(before, (ast.Assign, ast.AnnAssign))
                    and isinstance(statement, ast.Expr)
                    and isinstance(statement.value, ast.Constant)
                    and isinstance(statement.value.value, str)):
                prose += _prose(statement.value.value, statement.lineno)
    prose += [(token.start[0], token.string)
              for token in tokenize.generate_tokens(io.StringIO(source).readline)
              if token.type == tokenize.COMMENT]
    return sorted((line, text.strip()) for line, text in prose if MEASUREMENT.search(text))


def test_no_dates_or_throughputs_in_docstrings_and_comments() -> None:
    """Code says what and why; a speed claim links to the heading of docs/benchmarks.md that
    measures it, where the dates, machines and tokens/s live."""
    found = [f"src/lmlab/{module}:{line}: {text}" for module in MODULES
             for line, text in measurements_in((SRC / module).read_text(encoding="utf-8"))]
    assert not found, "move these measurements to docs/benchmarks.md:\n" + "\n".join(found)


def test_the_measurement_checker_sees_a_dated_docstring() -> None:
    source = (
        '"""A module."""\n'
        "def f(n):\n"
        '    """Fast: 8,100 tokens/s on the 2-core VM (2026-12-02).\n'
        "\n"
        "    >>> f(3)\n"
        "    '3 tok/s'\n"
        '    """\n'
        "    rate = n  # 12 tok/s here\n"
        '    """A rate, measured 2026-11-28."""\n'
        '    return f"{rate} tok/s"\n'
    )
    assert [line for line, _ in measurements_in(source)] == [3, 8, 9]
    assert measurements_in('def f():\n    """Fast (measured: docs/benchmarks.md)."""\n') == []


def test_measured_links_name_a_heading_of_the_benchmarks() -> None:
    """Each ``(measured: docs/benchmarks.md, "Heading")`` in the source names the start of a
    heading (or of a bold paragraph) that is there."""
    benchmarks = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    names = [line.lstrip("#").strip() for line in benchmarks.splitlines() if line.startswith("#")]
    names += re.findall(r"\*\*(.+?)\*\*", " ".join(benchmarks.split()))
    link = re.compile(r'measured: docs/benchmarks\.md((?:,? (?:and )?"[^"]+")+)')
    broken = []
    for module in MODULES:
        text = re.sub(r"\s*\n\s*(?:#\s*)?", " ", (SRC / module).read_text(encoding="utf-8"))
        broken += [f"src/lmlab/{module}: {name!r}" for match in link.finditer(text)
                   for name in re.findall(r'"([^"]+)"', match.group(1))
                   if not any(heading.startswith(name) for heading in names)]
    assert not broken, "no such heading in docs/benchmarks.md:\n" + "\n".join(broken)
