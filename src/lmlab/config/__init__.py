"""Validated configuration: the config tables, reading them from TOML and overrides, and the
roles and diff of their dotted keys, and the presets that ship with lmlab.

::

    config.toml or a preset's name + section.key=value words ─► overrides.load_config ─► Config
    two configs ─► keys.diff ─► the keys that differ (each key's role declared in keys)
"""

from lmlab.config.keys import (
    BOOKKEEPING,
    DATA_KEYS,
    LAUNCH_KEYS,
    LENGTH_KEYS,
    MODEL_KEYS,
    NOT_DEFINING,
    SEED,
    Change,
    diff,
    flatten,
    has_role,
    model_differences,
    run_identity,
)
from lmlab.config.overrides import (
    config_from_dict,
    describe_error,
    format_value,
    load_config,
    parse_value,
    read_toml,
)
from lmlab.config.presets import (
    Preset,
    all_presets,
    find_preset,
    preset_names,
    preset_path,
    resolve_config,
)
from lmlab.config.tables import (
    Config,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    default_d_ff,
)

__all__ = [
    "BOOKKEEPING", "DATA_KEYS", "LAUNCH_KEYS", "LENGTH_KEYS", "MODEL_KEYS", "NOT_DEFINING",
    "SEED", "Change",
    "Config", "DataConfig", "ModelConfig", "OptimConfig", "Preset", "RunConfig", "TrainConfig",
    "all_presets", "config_from_dict", "default_d_ff", "describe_error", "diff", "find_preset",
    "flatten", "format_value", "has_role", "load_config", "model_differences", "parse_value",
    "preset_names", "preset_path", "read_toml", "resolve_config", "run_identity",
]
