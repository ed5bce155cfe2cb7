"""Validated configuration: the config tables, reading them from TOML and overrides, and the
roles and diff of their dotted keys.

::

    config.toml + section.key=value words ─► overrides.load_config ─► tables.Config
    two configs ─► keys.diff ─► the keys that differ (each key's role declared in keys)
"""

from lmlab.config.keys import (
    BOOKKEEPING,
    DATA_KEYS,
    LAUNCH_KEYS,
    LENGTH_KEYS,
    MODEL_KEYS,
    SEED,
    Change,
    diff,
    flatten,
    has_role,
    model_differences,
)
from lmlab.config.overrides import (
    config_from_dict,
    describe_error,
    format_value,
    load_config,
    parse_value,
    read_toml,
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
    "BOOKKEEPING", "DATA_KEYS", "LAUNCH_KEYS", "LENGTH_KEYS", "MODEL_KEYS", "SEED", "Change",
    "Config", "DataConfig", "ModelConfig", "OptimConfig", "RunConfig", "TrainConfig",
    "config_from_dict", "default_d_ff", "describe_error", "diff", "flatten", "format_value",
    "has_role", "load_config", "model_differences", "parse_value", "read_toml",
]
