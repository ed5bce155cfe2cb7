"""The presets that ship with lmlab: found by name from any folder, short headers, every one
parses, and `lmlab presets` lists and prints them."""

import doctest
import tomllib
from pathlib import Path

import pytest

from lmlab.config import all_presets, load_config, preset_names, resolve_config
from lmlab.config import presets as presets_module
from lmlab.errors import ConfigError
from lmlab.experiments.sweep import Sweep, is_sweep_file
from tests.helpers.lmlab_cli import cli
from tests.helpers.paths import PRESETS

FILES = sorted([*PRESETS.glob("*.toml"), *PRESETS.glob("*/*.toml")])
CONFIGS = [name for name, preset in all_presets().items() if preset.kind == "config"]
SWEEPS = [name for name, preset in all_presets().items() if preset.kind == "sweep"]


def test_every_file_is_a_preset_of_a_unique_name() -> None:
    assert len({path.stem for path in FILES}) == len(FILES)
    assert sorted(preset_names()) == sorted(path.stem for path in FILES)
    assert {"tinystories-cpu", "tinystories-17m", "owt", "cpu-base", "lr_sweep"} <= set(
        preset_names())


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(presets_module).failed == 0


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.stem)
def test_a_header_is_at_most_8_comment_lines_and_links_to_the_docs(path: Path) -> None:
    """What it is for, how to run it, what to expect, and where the rest is: the reasoning and
    the measurements live in docs/presets.md, under a heading of the preset's name."""
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            break
        header += [line] if line.startswith("#") else []
    assert 1 <= len(header) <= 8, f"{path.name}: {len(header)} comment lines"
    assert f"docs/presets.md#{path.stem}" in "\n".join(header)
    assert f"lmlab {'sweep' if is_sweep_file(path) else 'train'} " in "\n".join(header)
    docs = (PRESETS.parents[2] / "docs" / "presets.md").read_text(encoding="utf-8")
    assert f"\n## {path.stem}\n" in docs
    assert all_presets()[path.stem].description == header[0].removeprefix("# ")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_preset_loads(name: str) -> None:
    config = load_config(name)
    assert config.max_steps or config.train.time_budget_s


@pytest.mark.parametrize("name", SWEEPS)
def test_every_sweep_preset_loads_in_every_variant(name: str) -> None:
    for variant in [None, *all_presets()[name].variants]:
        sweep = Sweep.from_file(name, variant)
        assert sweep.config.is_file() and sweep.combinations(), (name, variant)
        assert sweep.config.parent in (PRESETS, PRESETS / "experiments")
        load_config(sweep.config, sweep.overrides)


@pytest.mark.parametrize("spelling", ["tinystories-cpu", "tinystories-cpu.toml",
                                      "configs/tinystories-cpu.toml",
                                      "../configs/tinystories-cpu.toml"])
def test_a_preset_resolves_from_any_folder(tmp_path: Path, monkeypatch, spelling: str) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config(spelling) == PRESETS / "tinystories-cpu.toml"
    assert load_config(spelling).run.name == "tinystories-cpu"


def test_a_sweep_preset_and_its_base_resolve_from_any_folder(tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for spelling in ("lr_sweep", "configs/experiments/lr_sweep.toml"):
        assert is_sweep_file(spelling)
        sweep = Sweep.from_file(spelling, "cpu")
        assert sweep.name == "lr_sweep"
        assert sweep.config == PRESETS / "experiments" / "cpu-base.toml"
        assert Sweep.from_file(spelling).config == PRESETS / "tinystories-17m.toml"


def test_a_sweep_file_copied_elsewhere_finds_its_base_preset(tmp_path: Path) -> None:
    """Beside the copy first (a base of one's own), else the preset of that name; the old
    checkout's relative spelling (``../tinystories-17m.toml``) too."""
    copy = tmp_path / "my_sweep.toml"
    copy.write_text((PRESETS / "experiments" / "lr_sweep.toml").read_text())
    assert Sweep.from_file(copy).config == PRESETS / "tinystories-17m.toml"
    assert Sweep.from_file(copy, "cpu").config == PRESETS / "experiments" / "cpu-base.toml"
    (tmp_path / "cpu-base.toml").write_text("# mine\n")
    assert Sweep.from_file(copy, "cpu").config == tmp_path / "cpu-base.toml"
    copy.write_text('config = "../tinystories-17m.toml"\n[grid]\n"optim.lr_max" = [1e-3]\n')
    assert Sweep.from_file(copy).config == PRESETS / "tinystories-17m.toml"


def test_a_file_of_ones_own_wins_over_the_preset(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "configs" / "tinystories-cpu.toml"
    own.parent.mkdir()
    own.write_text((PRESETS / "tinystories-cpu.toml").read_text().replace(
        'name = "tinystories-cpu"', 'name = "mine"'))
    for spelling in ("configs/tinystories-cpu.toml", own):
        assert resolve_config(spelling) == Path(spelling)
        assert load_config(spelling).run.name == "mine"
    assert load_config("tinystories-cpu").run.name == "tinystories-cpu"


@pytest.mark.parametrize("spelling", ["tinystories-gpu", "data/tinystories-cpu.toml",
                                      "tinystories-cpu.json"])
def test_an_unknown_name_is_one_line_listing_the_presets(tmp_path: Path, monkeypatch,
                                                         spelling: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(spelling)
    message = str(caught.value)
    assert message == (f"config file {spelling} does not exist "
                       f"(presets: {', '.join(preset_names())})")
    assert "\n" not in message and "tinystories-cpu, " in message and "lr_sweep" in message


def test_lmlab_presets_lists_every_preset(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = cli(capsys, "presets")
    assert code == 0
    for name, preset in all_presets().items():
        assert name in out, name
        assert preset.description.split()[0] in out
    assert out.count("sweep") >= len(SWEEPS) and "cpu" in out


def test_lmlab_presets_prints_a_preset_that_parses(capsys, tmp_path: Path) -> None:
    code, out, _ = cli(capsys, "presets", "lr_sweep")
    assert code == 0 and out == (PRESETS / "experiments" / "lr_sweep.toml").read_text()
    copy = tmp_path / "lr.toml"
    copy.write_text(out)
    assert tomllib.loads(out)["variant"]["cpu"]
    assert Sweep.from_file(copy, "cpu").combinations()
    code, out, _ = cli(capsys, "presets", "tinystories-cpu")
    copy.write_text(out)
    assert code == 0 and load_config(copy).model.num_layers == 5


def test_lmlab_presets_names_the_presets_when_the_name_is_unknown(capsys) -> None:
    code, _, err = cli(capsys, "presets", "tinystories")
    assert code == 1 and err.startswith("error: no preset 'tinystories' (presets: ")
    assert err.count("\n") == 1
