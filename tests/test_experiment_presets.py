"""Every preset in configs/experiments/ plans (GPU and CPU variants) and its CPU variant trains;
bad sweep files are one-line errors."""

from dataclasses import replace
from pathlib import Path

import pytest

from lmlab.errors import ConfigError
from lmlab.sweep import Sweep, is_sweep_file, merge, plan, run_sweep
from tests.tiny_runs import tiny_run

EXPERIMENTS = Path(__file__).resolve().parents[1] / "configs" / "experiments"
PRESETS = sorted(path for path in EXPERIMENTS.glob("*.toml") if is_sweep_file(path))
PROBLEMS = {"lr_sweep", "batch_size", "no_rmsnorm", "post_norm", "nope", "silu_ffn", "owt_main",
            "leaderboard"}


def test_one_preset_per_cs336_problem() -> None:
    assert {path.stem for path in PRESETS} == PROBLEMS


def _tiny(sweep: Sweep, tmp_path: Path) -> Sweep:
    """The preset on tiny test data, with a model and a time budget small enough for a test."""
    data = [w for w in tiny_run(tmp_path) if w.startswith(("data.", "run.runs_dir"))]
    return merge(sweep, overrides=[*data, "model.context_length=16", "model.d_model=32",
                                   "model.num_layers=1", "model.num_heads=2",
                                   "train.batch_size=2", "train.time_budget_s=0.3",
                                   "train.compile=false", "train.device=cpu"])


@pytest.mark.parametrize("preset", PRESETS, ids=lambda path: path.stem)
def test_the_preset_plans_and_its_cpu_variant_trains(preset: Path, tmp_path: Path) -> None:
    gpu = plan(_tiny(Sweep.from_file(preset), tmp_path))
    cpu = plan(_tiny(Sweep.from_file(preset, "cpu"), tmp_path))
    assert len(gpu.points) >= 1 and len(cpu.points) >= 1
    first = replace(cpu, points=cpu.points[:1])
    rows = run_sweep(first)
    assert rows[0]["status"] == "finished" and rows[0]["steps"] >= 1


def test_preset_specifics(tmp_path: Path) -> None:
    lrs = [p.config.optim.lr_max for p in plan(_tiny(
        Sweep.from_file(EXPERIMENTS / "lr_sweep.toml", "cpu"), tmp_path)).points]
    assert max(lrs) >= 30 * min(lrs)  # wide enough to reach divergence
    silu = plan(_tiny(Sweep.from_file(EXPERIMENTS / "silu_ffn.toml"), tmp_path))
    models = {p.config.model.ffn: p.config.model for p in silu.points}
    swiglu_params = 3 * models["swiglu"].d_model * models["swiglu"].ffn_width
    silu_params = 2 * models["silu"].d_model * models["silu"].ffn_width
    assert models["silu"].ffn_width == 4 * models["silu"].d_model
    assert abs(silu_params - swiglu_params) / swiglu_params < 0.05
    board = plan(_tiny(Sweep.from_file(EXPERIMENTS / "leaderboard.toml"), tmp_path)).points[0]
    assert board.config.model.tie_embeddings and board.config.train.schedule_over_time


def test_bad_sweep_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('config = "x.toml"\ngrids = {}\n')
    with pytest.raises(ConfigError, match="unknown sweep key.*grids"):
        Sweep.from_file(bad)
    with pytest.raises(ConfigError, match=r"has no \[variant.gpu\] table \(it has: cpu\)"):
        Sweep.from_file(EXPERIMENTS / "nope.toml", "gpu")
    bad.write_text('config = "x.toml"\n[grid]\n"optim.lr_max" = 3\n')
    with pytest.raises(ConfigError, match="grid.optim.lr_max must be a non-empty list"):
        Sweep.from_file(bad)
    bad.write_text("config = \n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        Sweep.from_file(bad)
