"""Config loading: TOML presets, dotted overrides, and one-line errors that name the key."""

import tomllib
from pathlib import Path

import pytest

from lmlab.config import (
    BOOKKEEPING,
    DATA_KEYS,
    LENGTH_KEYS,
    MODEL_KEYS,
    SEED,
    Config,
    ModelConfig,
    all_presets,
    config_from_dict,
    diff,
    flatten,
    has_role,
    load_config,
    model_differences,
)
from lmlab.errors import ConfigError
from lmlab.optim import check_schedule
from tests.helpers.lmlab_cli import cli

REQUIRED = ["data.train_path=t.bin", "data.valid_path=v.bin", "train.max_steps=10"]


def test_tinystories_17m_is_the_cs336_model() -> None:
    cfg = load_config("tinystories-17m")
    m = cfg.model
    assert (m.vocab_size, m.context_length, m.d_model, m.num_layers, m.num_heads, m.d_ff) == (
        10_000, 256, 512, 4, 16, 1344)
    assert m.rope_theta == 10_000
    assert cfg.train.max_tokens == 327_680_000


def test_overrides_are_parsed_as_toml_values() -> None:
    cfg = load_config(None, [*REQUIRED, "optim.lr_max=3e-3", "train.compile=true",
                             "run.name=my-run", "run.trackers=['tensorboard']",
                             "optim.grad_clip=none"])
    assert cfg.optim.lr_max == 3e-3
    assert cfg.train.compile is True
    assert cfg.run.name == "my-run"
    assert cfg.run.trackers == ["tensorboard"]
    assert cfg.optim.grad_clip is None


def test_overrides_beat_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[data]\ntrain_path = "a.bin"\nvalid_path = "b.bin"\n'
                    "[train]\nmax_steps = 5\nbatch_size = 4\n")
    cfg = load_config(path, ["train.batch_size=8"])
    assert (cfg.train.batch_size, cfg.train.max_steps) == (8, 5)


def test_max_tokens_sets_the_steps() -> None:
    cfg = load_config(None, ["data.train_path=t.bin", "data.valid_path=v.bin",
                             "train.max_tokens=1000", "train.batch_size=2",
                             "model.context_length=16"])
    assert cfg.tokens_per_step == 32
    assert cfg.max_steps == 32  # ceil(1000 / 32)
    assert cfg.cosine_cycle_iters == 32


def test_resolved_config_round_trips() -> None:
    cfg = load_config(None, REQUIRED)
    assert config_from_dict(cfg.model_dump(mode="json")) == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.batchsize=3"], "unknown config key 'train.batchsize' (valid train keys: "
                                "batch_size, grad_accum"),
        (["trian.seed=1"], "unknown config section 'trian'"),
        (["seed=1"], "not of the form section.key=value"),
        (["train.batch_size=0"], "override train.batch_size=0: Input should be greater than 0"),
        (["optim.lr_max=fast"], "override optim.lr_max=fast: Input should be a valid number"),
        (["model.norm=layer"], "override model.norm=layer: Input should be 'rms' or 'none'"),
        (["train.device=tpu"], "override train.device=tpu: not valid: auto (cuda > mps > cpu)"),
        (["model.num_heads=3"], "override model.num_heads=3: model.d_model (512) must be "
                                "divisible by model.num_heads (3)"),
        (["train.max_tokens=100"], "overrides train.max_steps=10 train.max_tokens=100: set "
                                   "train.max_steps or train.max_tokens, not both"),
        (["run.trackers=['mlflow']"],
         "override run.trackers=['mlflow']: Input should be 'wandb', 'tensorboard' or 'trackio'"),
        (["optim.embedding_lr=0"], "override optim.embedding_lr=0: Input should be greater"),
        (["model.tie_embeddings=true", "optim.embedding_lr=0.1"],
         "overrides model.tie_embeddings=true optim.embedding_lr=0.1: optim.embedding_lr sets an "
         "untied embedding's rate, but with model.tie_embeddings"),
    ],
)
def test_bad_overrides_name_the_override(overrides: list[str], message: str) -> None:
    """A bad value given on the command line is blamed on the word that gave it, not on the
    config file it was read with."""
    with pytest.raises(ConfigError, match=None) as info:
        load_config(None, [*REQUIRED, *overrides])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_value_is_blamed_where_it_was_given(tmp_path: Path, capsys) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[optim]\nlr_max = "x"\n[data]\ntrain_path = "a"\nvalid_path = "b"\n'
                    "[train]\nmax_steps = 5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.batch_size=0", "optim.lr_min=1e-4"])
    assert str(info.value) == (
        f"{path}: optim.lr_max: Input should be a valid number, unable to parse string as a "
        f"number (got 'x'); override train.batch_size=0: Input should be greater than 0")
    code, out, err = cli(capsys, "train", "tinystories-cpu", "optim.lr_max=abc")
    assert (code, out) == (1, "") and err == (
        "error: override optim.lr_max=abc: Input should be a valid number, unable to parse "
        "string as a number\n")


def test_unknown_key_in_file_lists_the_valid_ones(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[data]\ntrain_path = "a"\nvalid_path = "b"\ncontext = 5\n'
                    "[train]\nmax_steps = 5\n")
    with pytest.raises(ConfigError, match=r"unknown key 'data.context' \(valid: train_path, "
                                          r"valid_path, sampling\)"):
        load_config(path)


def test_missing_tables_and_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing key 'data'"):
        load_config(None, ["train.max_steps=3"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


def test_training_length_is_required() -> None:
    with pytest.raises(ConfigError, match="set one of train.max_steps"):
        load_config(None, REQUIRED[:2] + ["train.batch_size=2"])


def test_every_field_has_a_description() -> None:
    """The descriptions are the --help text and the README's reference."""
    for section in Config.model_fields.values():
        for name, field in section.annotation.model_fields.items():  # type: ignore[union-attr]
            assert field.description, name


def test_toml_literals_in_presets_are_plain() -> None:
    for preset in all_presets().values():
        if preset.kind == "config":
            assert set(tomllib.loads(preset.path.read_text())) <= set(Config.model_fields)


def test_diff_finds_the_changed_keys_in_any_form() -> None:
    base = load_config(None, ["data.train_path=t.bin", "data.valid_path=v.bin",
                              "train.max_steps=10"])
    other = load_config(None, ["data.train_path=t.bin", "data.valid_path=v.bin",
                               "train.max_steps=10", "optim.lr_max=3e-3", "run.name=b",
                               "train.log_interval=1"])
    every = [(c.key, c.before, c.after) for c in diff(base, other)]
    assert every == [("optim.lr_max", 1e-3, 3e-3), ("train.log_interval", 10, 1),
                     ("run.name", "run", "b")]
    assert [c.key for c in diff(base, other, ignoring=BOOKKEEPING)] == ["optim.lr_max"]
    nested, flat = base.model_dump(mode="json"), flatten(other.model_dump(mode="json"))
    assert [c.key for c in diff(nested, flat, ignoring=BOOKKEEPING)] == ["optim.lr_max"]


def test_diff_skips_keys_one_side_lacks_and_compares_what_values_mean() -> None:
    old = {"model": {"d_model": 64}, "data": {"train_path": "a/train.bin"}}
    new = {"model": {"d_model": 64, "qk_norm": False}, "data": {"train_path": "b/train.bin"}}
    assert [c.key for c in diff(old, new)] == ["data.train_path"]  # qk_norm is newer than old
    same_file = diff(old, new, same=lambda key, value: Path(value).name if "path" in key
                     else value)
    assert same_file == []


def test_every_key_has_one_role() -> None:
    """The roles are declared once; a key is not both bookkeeping and the run's length."""
    keys = flatten(load_config(None, ["data.train_path=t.bin", "data.valid_path=v.bin",
                                      "train.max_steps=10"]).model_dump(mode="json"))
    roles = {"model": MODEL_KEYS, "data": DATA_KEYS, "length": LENGTH_KEYS, "seed": (SEED,),
             "bookkeeping": BOOKKEEPING}
    for key in keys:
        assert sum(has_role(key, role) for role in roles.values()) <= 1, key
    assert has_role("train.max_tokens", LENGTH_KEYS) and has_role("run.trackers", BOOKKEEPING)
    assert not has_role("train.batch_size", BOOKKEEPING + LENGTH_KEYS)


def test_model_differences_compare_the_ffn_width_as_used() -> None:
    assert model_differences(ModelConfig(d_model=64), ModelConfig(d_model=64, d_ff=192)) == []
    assert model_differences(ModelConfig(dropout=0.1), ModelConfig(), ignoring={"dropout"}) == []
    assert model_differences(ModelConfig(num_layers=2), ModelConfig(num_layers=3)) == [
        "model.num_layers=2 (config has 3)"]


@pytest.mark.parametrize(("words", "error"), [
    (["optim.lr_max=1e-4", "optim.lr_min=1e-3"],
     "optim.lr_min (0.001) is above optim.lr_max (0.0001): the rate would climb as it decays; "
     "set optim.lr_min at most optim.lr_max"),
    (["optim.warmup_iters=10", "optim.cosine_cycle_iters=10"],
     "optim.cosine_cycle_iters (10) is not after optim.warmup_iters (10): the rate would drop "
     "from optim.lr_max to optim.lr_min the step warmup ends"),
    (["train.max_steps=3", "optim.warmup_iters=1000"],
     "the run would end before its warmup does: optim.warmup_iters (1,000) is not below its 3 "
     "steps (train.max_steps), so it never trains at optim.lr_max; lower optim.warmup_iters or "
     "train longer"),
    (["train.max_steps=1", "optim.warmup_iters=1"], "not below its 1 step (train.max_steps)"),
    (["train.max_steps=none", "train.max_tokens=640", "model.context_length=16",
      "train.batch_size=8", "optim.warmup_iters=5"],
     "optim.warmup_iters (5) is not below its 5 steps (train.max_tokens / 128 tokens a step)"),
])
def test_a_schedule_that_cannot_be_meant_is_an_error(words: list[str], error: str) -> None:
    """Checked where a run starts (not where a config is read, so old runs still open)."""
    config = load_config(None, [*REQUIRED, *words])
    with pytest.raises(ConfigError) as info:
        check_schedule(config)
    assert error in str(info.value)


@pytest.mark.parametrize(("words", "warning"), [
    (["train.max_steps=10", "optim.warmup_iters=6"],
     "warning: optim.warmup_iters (6) is more than half of the run's 10 steps (train.max_steps): "
     "most of it trains below optim.lr_max"),
    (["train.max_steps=10", "optim.warmup_iters=5"], None),  # half: still a run at its peak
    (["train.max_steps=10", "optim.warmup_iters=0"], None),
    (["optim.lr_min=1e-3", "optim.lr_max=1e-3", "optim.warmup_iters=2"], None),  # constant
    (["train.max_steps=none", "train.time_budget_s=60", "optim.warmup_iters=100000"], None),
    (["train.max_steps=none", "train.time_budget_s=60", "train.schedule_over_time=true",
      "optim.warmup_iters=50", "optim.cosine_cycle_iters=10"], None),  # the cycle is unused
])
def test_an_odd_schedule_is_one_warning(words: list[str], warning: str | None) -> None:
    """A time budget alone gives no step count to check a warmup against: nothing is said."""
    said: list[str] = []
    assert check_schedule(load_config(None, [*REQUIRED, *words]), said.append) == said
    assert said == ([warning] if warning else [])
