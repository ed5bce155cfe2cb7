"""The tests' own layout: helpers live in ``tests/helpers/`` and are imported one way
(``from tests.helpers.tiny_runs import tiny_run``); no test module imports another, nor conftest.

A test module imported by another is collected twice under two names (pytest imports
``test_train`` by its basename, the importer as ``tests.test_train``), and a bare ``tiny_runs``
works only when pytest happens to put ``tests/`` on the path.
"""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
HELPERS = sorted(p.stem for p in (TESTS / "helpers").glob("*.py") if p.stem != "__init__")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every module that ``path`` imports, at any depth; a relative
    import is written with its leading dots, ``from tests import x`` as ``tests.x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.append((node.lineno, module))
            if module in ("tests", "tests.helpers"):
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def offence(module: str) -> str | None:
    """Why importing ``module`` from a test or a helper breaks the layout, or None."""
    parts = module.split(".")
    if module.startswith("."):
        return "a relative import (write tests.helpers.<module>)"
    if any(part.startswith("test_") for part in parts):
        return "imports a test module (move what it needs to tests/helpers/)"
    if "conftest" in parts:
        return "imports conftest (move what it needs to tests/helpers/)"
    if parts[0] in (*HELPERS, "helpers"):
        return "a bare helper import (write tests.helpers.<module>)"
    if parts[0] == "tests" and len(parts) > 1 and parts[1] != "helpers":
        return "imports from tests/ outside tests/helpers/"
    return None


def test_the_helpers_are_a_package() -> None:
    assert (TESTS / "helpers" / "__init__.py").is_file()
    assert {"tiny_runs", "tokenizer_refs", "lmlab_cli"} <= set(HELPERS)
    assert not [p.name for p in TESTS.glob("*.py")
                if not p.name.startswith("test_") and p.name != "conftest.py"]


def test_tests_import_helpers_one_way_and_never_each_other() -> None:
    files = [*sorted(TESTS.glob("test_*.py")), TESTS / "conftest.py",
             *sorted((TESTS / "helpers").glob("*.py"))]
    bad = [f"{path.relative_to(TESTS.parent)}:{line}: {module}: {why}"
           for path in files for line, module in imported_modules(path)
           if (why := offence(module))]
    assert not bad, "\n".join(bad)


def test_the_rule_catches_each_way_to_break_it() -> None:
    assert offence("tests.test_train") and offence("test_plot") and offence("tests.conftest")
    assert offence("tiny_runs") and offence("helpers.tiny_runs") and offence(".tiny_runs")
    assert offence("tests.tiny_runs")
    assert not offence("tests.helpers.tiny_runs") and not offence("lmlab.training.loop")
    assert not offence("pytest") and not offence("tests.helpers")
