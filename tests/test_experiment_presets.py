"""Every sweep preset (src/lmlab/presets/experiments/) plans (GPU and CPU variants) and its CPU
variant trains; bad sweep files are one-line errors."""

from dataclasses import replace
from pathlib import Path

import pytest

from lmlab.config import Config, load_config
from lmlab.errors import ConfigError
from lmlab.experiments.planning import plan
from lmlab.experiments.runner import run_sweep
from lmlab.experiments.search import FIRST, value_at
from lmlab.experiments.sweep import Sweep, is_sweep_file
from tests.helpers.paths import PRESETS as ALL_PRESETS
from tests.helpers.tiny_runs import tiny_run

EXPERIMENTS = ALL_PRESETS / "experiments"
PRESETS = sorted(path for path in EXPERIMENTS.glob("*.toml") if is_sweep_file(path))
PROBLEMS = {"lr_sweep", "batch_size", "no_rmsnorm", "post_norm", "nope", "silu_ffn", "owt_main",
            "leaderboard"}


def test_one_preset_per_cs336_problem() -> None:
    assert {path.stem for path in PRESETS} == PROBLEMS


def _tiny(sweep: Sweep, tmp_path: Path) -> Sweep:
    """The preset on tiny test data, with a model and a time budget small enough for a test (and
    a warmup short enough for the few steps a fixed token budget then leaves a large batch)."""
    data = [w for w in tiny_run(tmp_path) if w.startswith(("data.", "run.runs_dir"))]
    return sweep.merge(overrides=[*data, "model.context_length=16", "model.d_model=32",
                                  "model.num_layers=1", "model.num_heads=2",
                                  "optim.warmup_iters=1",
                                  "train.batch_size=2", "train.time_budget_s=0.3",
                                  "train.compile=false", "train.device=cpu"])


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: path.stem)
def test_the_preset_plans_and_its_cpu_variant_trains(preset: Path, tmp_path: Path) -> None:
    gpu = plan(_tiny(Sweep.from_file(preset), tmp_path))
    cpu = plan(_tiny(Sweep.from_file(preset, "cpu"), tmp_path))
    assert len(gpu.points) >= 1 and len(cpu.points) >= 1
    first = replace(cpu, points=cpu.points[:1],  # one run: no search round after it
                    sweep=cpu.sweep.model_copy(update={"search": None}))
    rows = run_sweep(first)
    assert rows[0]["status"] == "finished" and rows[0]["steps"] >= 1


def _configs(name: str, variant: str | None = None) -> list[Config]:
    """A preset's point configs, without checking that its data exists."""
    sweep = Sweep.from_file(EXPERIMENTS / f"{name}.toml", variant)
    first = ([f"{sweep.search.key}={value_at(sweep.search, i)}" for i in FIRST]
             if sweep.search else [None])
    return [load_config(sweep.config, [*sweep.overrides, *point, *filter(None, [word])])
            for point in sweep.combinations() for word in first]


ABLATIONS = {"no_rmsnorm": ("model", "norm"), "post_norm": ("model", "norm_position"),
             "nope": ("model", "position"), "silu_ffn": ("model", "ffn")}
"""Each ablation preset and the switch it flips."""


@pytest.mark.parametrize("variant", [None, "cpu"])
@pytest.mark.parametrize("name", ABLATIONS)
def test_each_ablation_arm_runs_at_the_same_rates(name: str, variant: str | None) -> None:
    """Both arms searched alike from one shared first round of three rates: the usable ceiling
    of each, and each at its own best rate, are then read off the same sweep."""
    section, key = ABLATIONS[name]
    rates: dict[str, set[float]] = {}
    for config in _configs(name, variant):
        arm = getattr(getattr(config, section), key)
        rates.setdefault(arm, set()).add(config.optim.lr_max)
    (arm_rates, *others) = rates.values()
    assert len(rates) == 2 and len(arm_rates) >= 3 and all(o == arm_rates for o in others)


def test_preset_specifics(tmp_path: Path) -> None:
    for variant in (None, "cpu"):  # searched until a rate diverges, then refined
        search = Sweep.from_file(EXPERIMENTS / "lr_sweep.toml", variant).search
        assert search.key == "optim.lr_max" and search.edge and search.refine
        assert search.max_points >= 7
    batch = plan(_tiny(Sweep.from_file(EXPERIMENTS / "batch_size.toml", "cpu"), tmp_path))
    sizes = sorted({p.config.train.batch_size for p in batch.points})
    assert sizes[0] <= 4 and sizes[-1] >= 64  # a 16x span
    assert batch.sweep.search.edge  # the best and the diverging rate of each batch size
    for size in sizes:  # the rate searched at every batch size, from its sqrt-scaled start
        rates = sorted(p.config.optim.lr_max for p in batch.points
                       if p.config.train.batch_size == size)
        scale = (size / 2) ** 0.5  # _tiny's base batch is 2
        assert len(set(rates)) == 3 and rates[1] == pytest.approx(3e-3 * scale, rel=1e-3)
    depth = Sweep.from_file(EXPERIMENTS / "post_norm.toml", "cpu-depth")
    assert depth.grid["model.num_layers"] == ["2", "4", "8", "12"] and depth.search is not None
    longer = _configs("silu_ffn", "cpu-long")
    assert {c.train.max_steps for c in longer} == {2 * c.train.max_steps
                                                   for c in _configs("silu_ffn", "cpu")}
    for variant in (None, "cpu"):
        models = {c.model.ffn: c.model for c in _configs("silu_ffn", variant)}
        swiglu_params = 3 * models["swiglu"].d_model * models["swiglu"].ffn_width
        silu_params = 2 * models["silu"].d_model * models["silu"].ffn_width
        assert models["silu"].ffn_width == 4 * models["silu"].d_model
        assert abs(silu_params - swiglu_params) / swiglu_params < 0.05
    (board,) = plan(_tiny(Sweep.from_file(EXPERIMENTS / "leaderboard.toml"), tmp_path)).points
    model = board.config.model
    assert board.config.train.schedule_over_time and board.config.optim.optimizer == "muon"
    assert board.config.data.sampling == "epochs"
    assert model.ffn == "relu2" and model.qk_norm and model.zero_init_proj and model.logit_softcap
    assert model.tie_embeddings  # untied cost 0.021-0.064 bits/byte on a CPU, however set up
    assert "train.time_budget_s=5400" in Sweep.from_file(EXPERIMENTS / "leaderboard.toml").overrides


def test_bad_sweep_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('config = "x.toml"\ngrids = {}\n')
    with pytest.raises(ConfigError, match="bad.toml: unknown key 'grids'"):
        Sweep.from_file(bad)
    with pytest.raises(ConfigError, match=r"has no \[variant.gpu\] table \(it has: cpu\)"):
        Sweep.from_file(EXPERIMENTS / "nope.toml", "gpu")
    bad.write_text('config = "x.toml"\n[grid]\n"optim.lr_max" = 3\n')
    with pytest.raises(ConfigError, match="grid.optim.lr_max must be a non-empty list"):
        Sweep.from_file(bad)
    bad.write_text("config = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        Sweep.from_file(bad)


