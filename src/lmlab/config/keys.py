"""Dotted config keys, what each kind of key means for a run, and the one diff of two configs.

A config flattens to dotted keys (``optim.lr_max``), the names overrides use. Keys play one of
these roles, declared here once for resumes, sweeps, comparisons and reports alike:

- the **model** (``model.*``) and the **data** (``data.*``): what the weights are and what they
  learn from; a resume may not change them;
- the **length** (:data:`LENGTH_KEYS`): when the run ends and how its schedule reaches that end;
- the **seed** (:data:`SEED`): which of several runs of one point this is;
- **bookkeeping** (:data:`BOOKKEEPING`): how a run is named, placed, tracked or watched;
- **launch** keys (:data:`LAUNCH_KEYS`): how one session of a run is started;
- every other key is a **setting** of the training (rates, batch, precision...).

Across these roles, every key but :data:`NOT_DEFINING` **defines a run**: two configs whose
:func:`run_identity` is equal train the same run (what ``lmlab sweep`` reuses rather than train
twice).
"""

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from lmlab.config.tables import ModelConfig

MODEL_KEYS = ("model.",)
DATA_KEYS = ("data.",)
LENGTH_KEYS = ("train.max_steps", "train.max_tokens", "train.time_budget_s",
               "train.schedule_over_time", "optim.cosine_cycle_iters")
SEED = "train.seed"
BOOKKEEPING = ("run.", "train.eval_interval", "train.ckpt_interval", "train.log_interval")
"""Keys that name, place, track or watch a run rather than change what it learns (how often it
is evaluated, checkpointed or logged: a fixed-token sweep scales these with the batch size)."""
LAUNCH_KEYS = ("run.resume", "train.world_size")
"""Keys that say how one session starts: a resume may change them (the global batch, which the
world size is part of, is checked by the data sampler's state)."""
NOT_DEFINING = ("run.name", "run.runs_dir", "run.resume", "train.ckpt_interval",
                "train.dist_timeout_s")
"""Keys two copies of one run may differ in: where it lies, how a session starts, how often it
saves a checkpoint (saving changes no loss and no record) and how long ranks wait for each other.
Every other key defines the run, the bookkeeping that changes what it records included: the log
and eval intervals and ``train.eval_batches`` (the logged curves; the divergence rules read the
logged losses), ``train.peak_flops`` (the MFU logged), ``run.trackers`` and
``run.wandb_project`` (where it reports); so do the keys that change its arithmetic
(``train.compile``, ``train.device``, ``train.dtype``, ``train.dist_backend``)."""


def has_role(key: str, role: Iterable[str]) -> bool:
    """Whether a dotted key is one of ``role``'s keys, or under one of its ``section.``
    prefixes.

    >>> has_role("run.name", BOOKKEEPING), has_role("train.seed", BOOKKEEPING)
    (True, False)
    """
    return any(key == name or (name.endswith(".") and key.startswith(name)) for name in role)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables to the dotted keys that overrides use.

    >>> flatten({"model": {"d_model": 64}, "optim": {"lr_max": 0.001}})
    {'model.d_model': 64, 'optim.lr_max': 0.001}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass(frozen=True)
class Change:
    """One key whose value differs between two configs."""

    key: str
    before: Any
    after: Any


def diff(before: BaseModel | Mapping[str, Any], after: BaseModel | Mapping[str, Any], *,
         ignoring: Iterable[str] = (), same: Callable[[str, Any], Any] | None = None
         ) -> list[Change]:
    """The keys whose values differ from ``before`` to ``after``, in ``after``'s key order.

    Either side is a config (any pydantic table), a nested dict (a run's ``config.json``) or
    dotted keys. Keys in ``ignoring`` (keys or ``section.`` prefixes, e.g. :data:`BOOKKEEPING`)
    are skipped, and so are keys that one side lacks (a config written before a key existed
    has its default). ``same(key, value)``, when given, maps a value to what it means before
    comparing (a token file's path to what the file holds).

    >>> [c.key for c in diff({"model": {"d_model": 32}, "run": {"name": "a"}},
    ...                      {"model": {"d_model": 64}, "run": {"name": "b"}},
    ...                      ignoring=BOOKKEEPING)]
    ['model.d_model']
    """
    old, new = _flat(before), _flat(after)
    meaning = same or (lambda key, value: value)
    return [Change(key, old[key], value) for key, value in new.items()
            if key in old and not has_role(key, ignoring)
            and meaning(key, old[key]) != meaning(key, value)]


def run_identity(config: BaseModel | Mapping[str, Any], *,
                 same: Callable[[str, Any], Any] | None = None) -> str:
    """A config's defining keys (every key but :data:`NOT_DEFINING`) and their values, as one
    string: two configs with the same keys train the same run exactly when their identities are
    equal, that is when :func:`diff` over the defining keys is empty once a length in tokens
    that is a whole number of steps is read as those steps (``train.max_tokens=819200`` at 2,048
    tokens a step is ``train.max_steps=400``). ``same`` maps a value to what it means, as in
    :func:`diff`.

    >>> a = {"optim": {"lr_max": 1e-3}, "run": {"name": "a"}, "train": {"seed": 0}}
    >>> b = {"optim": {"lr_max": 0.001}, "run": {"name": "b"}, "train": {"seed": 0}}
    >>> run_identity(a) == run_identity(b), run_identity(a) == run_identity({**a, "train": {}})
    (True, False)
    """
    meaning = same or (lambda key, value: value)
    return json.dumps({key: meaning(key, value) for key, value in _in_steps(_flat(config)).items()
                       if not has_role(key, NOT_DEFINING)}, sort_keys=True, default=str)


def _in_steps(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` with a ``train.max_tokens`` that is a whole number of steps given as
    ``train.max_steps``: the same run (the schedule, evaluations and divergence windows count
    the same steps), however the preset spelt its length.

    >>> flat = {"train.max_tokens": 4096, "train.max_steps": None, "train.batch_size": 4,
    ...         "train.grad_accum": 2, "train.world_size": 1, "model.context_length": 32}
    >>> _in_steps(flat)["train.max_steps"], _in_steps({**flat, "train.max_tokens": 4000}) == {
    ...     **flat, "train.max_tokens": 4000}
    (16, True)
    """
    tokens = flat.get("train.max_tokens")
    sizes = [flat.get(key) for key in ("train.batch_size", "train.grad_accum",
                                       "train.world_size", "model.context_length")]
    if not isinstance(tokens, int) or not all(isinstance(size, int) for size in sizes):
        return flat  # no length in tokens, or a batch still "auto"
    per_step = math.prod(sizes)
    if tokens % per_step:
        return flat  # the last step goes past max_tokens: not a whole number of steps
    return {**flat, "train.max_tokens": None, "train.max_steps": tokens // per_step}


def _flat(config: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, BaseModel):
        config = config.model_dump(mode="json")
    return flatten(config)


def model_differences(saved: ModelConfig, wanted: ModelConfig, *,
                      ignoring: Iterable[str] = ()) -> list[str]:
    """``model.key=saved (config has wanted)`` for each model key in which a saved model and the
    configured one differ, ``d_ff`` compared as used (given or by default), so a run can say at
    once every reason its weights do not fit.

    >>> model_differences(ModelConfig(d_model=32), ModelConfig(d_model=64, d_ff=172))
    ['model.d_model=32 (config has 64)', 'model.d_ff=128 (config has 172)']
    """
    def as_used(model: ModelConfig) -> dict[str, Any]:
        return {"model": {**model.model_dump(mode="json"), "d_ff": model.ffn_width}}

    skipped = [f"model.{key}" for key in ignoring]
    return [f"{change.key}={change.before!r} (config has {change.after!r})"
            for change in diff(as_used(saved), as_used(wanted), ignoring=skipped)]
