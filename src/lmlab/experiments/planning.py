"""Planning a sweep: every point resolved to a config and validated before the first run starts.

A typo in a grid key, a bad value, two points that would share a run directory, a run directory
left by a different config or a token file that cannot feed a point's model: each is an error
here, so it costs nothing.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmlab.config import Config, flatten, format_value, load_config
from lmlab.errors import ConfigError
from lmlab.experiments.compare import SEED, differences, varied_keys
from lmlab.experiments.sweep import Sweep, point_name
from lmlab.tokens import load_tokens
from lmlab.training.rundir import RunDir

RESERVED = ("run.name", "run.runs_dir", "run.resume")
"""Keys the sweep sets itself for each point."""


@dataclass(frozen=True)
class Point:
    """One run of the sweep: its name and the override words that make its config."""

    name: str
    words: tuple[str, ...]
    config: Config
    group: str
    """The point's name without its seed: the runs of one point over several seeds share it."""

    @property
    def run_dir(self) -> RunDir:
        return RunDir(self.config.run_dir)


@dataclass
class Plan:
    """A validated sweep: where it writes, and every point's config."""

    sweep: Sweep
    root: Path
    base: Config
    points: list[Point]

    @property
    def varied(self) -> list[str]:
        """The config keys that differ between points (a run's seed aside): the columns of the
        summary."""
        keys = varied_keys([flatten(p.config.model_dump(mode="json")) for p in self.points])
        return [key for key in keys if not (self.sweep.seeds > 1 and key == SEED)]

    def groups(self) -> dict[str, list[Point]]:
        """The runs of each point, over its seeds, in the order planned."""
        groups: dict[str, list[Point]] = {}
        for point in self.points:
            groups.setdefault(point.group, []).append(point)
        return groups

    def describe(self) -> dict[str, Any]:
        """``sweep.json``: the base config and each point's words, for the report and people."""
        return {
            "name": self.root.name,
            "description": self.sweep.description,
            "config": str(self.sweep.config),
            "overrides": self.sweep.overrides,
            "base": self.base.model_dump(mode="json"),
            "varied": self.varied,
            "seeds": self.sweep.seeds,
            "points": [{"name": p.name, "group": p.group, "words": list(p.words)}
                       for p in self.points],
        }


def plan(sweep: Sweep) -> Plan:
    """Resolve and validate every point before anything runs.

    Raises :class:`ConfigError` for bad grid words, unknown keys or values at any point, points
    that would share a run directory, or a run directory left by a different config; and
    :class:`DataError` for token files that cannot feed a point's model.
    """
    base = load_config(sweep.config, sweep.overrides)
    root = base.run.runs_dir / (sweep.name or sweep.config.stem)
    varied = sweep.combinations()
    for words in varied:
        for word in words:
            key = word.partition("=")[0].strip()
            if key in RESERVED:
                raise ConfigError(f"{key} cannot be swept: the sweep names each run")
            if sweep.fixed_tokens and key in ("train.max_steps", "train.max_tokens"):
                raise ConfigError(f"--fixed-tokens keeps the token budget, so {key} cannot vary")
            if sweep.seeds > 1 and key == SEED:
                raise ConfigError(f"{SEED} cannot vary in a sweep with --seeds: the sweep "
                                  "sets each run's seed")
    points = []
    for words in varied:
        group = point_name(words)
        for offset in range(sweep.seeds):
            seed_words = [f"{SEED}={base.train.seed + offset}"] if sweep.seeds > 1 else []
            name = f"{group}__seed-{base.train.seed + offset}" if seed_words else group
            run_words = [f"run.runs_dir={root}", f"run.name={name}", "run.resume=auto"]
            point_words = [*sweep.overrides, *words, *seed_words]
            config = load_config(sweep.config, [*point_words, *run_words])
            derived = _derived_words(sweep, base, config)
            if derived:
                config = load_config(sweep.config, [*point_words, *derived, *run_words])
            points.append(Point(name, (*point_words, *derived, *run_words), config, group))
    _check_unique(points)
    for point in points:
        _check_same_config(point)
    _check_data(points)
    return Plan(sweep, root, base, points)


def _derived_words(sweep: Sweep, base: Config, config: Config) -> list[str]:
    """The overrides that keep the token budget and rescale the learning rate.

    Keeping the token budget also keeps the evaluations and checkpoints at the same token
    counts: their step intervals scale with the tokens per step (batch 1 evaluates 16 times less
    often in steps than batch 16, so it is not evaluated 16 times as often in tokens)."""
    words = []
    if sweep.fixed_tokens:
        budget = base.train.max_tokens or (
            base.max_steps * base.tokens_per_step if base.max_steps else None)
        if budget is None:
            raise ConfigError("--fixed-tokens needs train.max_tokens or train.max_steps in the "
                              "base config (a token budget to keep)")
        words += ["train.max_steps=none", f"train.max_tokens={budget}"]
        ratio = base.tokens_per_step / config.tokens_per_step
        for key in ("eval_interval", "ckpt_interval"):
            interval = getattr(config.train, key)
            if interval:
                words.append(f"train.{key}={max(1, round(interval * ratio))}")
    if sweep.lr_scaling is not None:
        ratio = config.tokens_per_step / base.tokens_per_step
        power = 0.5 if sweep.lr_scaling == "sqrt" else 1.0
        words.append(f"optim.lr_max={format_value(config.optim.lr_max * ratio ** power)}")
    return words


def _check_unique(points: Sequence[Point]) -> None:
    seen: set[str] = set()
    for point in points:
        if point.name in seen:
            raise ConfigError(f"two sweep points are both named {point.name!r}: a value is "
                              f"repeated in the grid or list")
        seen.add(point.name)


def _check_same_config(point: Point) -> None:
    """A run directory left by a sweep with other settings must not be resumed as this one."""
    if not point.run_dir.config.is_file():
        return
    saved = flatten(point.run_dir.read_config())
    changed = differences(flatten(point.config.model_dump(mode="json")), saved)
    if changed:
        described = "; ".join(f"{key}={format_value(saved.get(key))} (now {format_value(value)})"
                              for key, value in changed.items())
        raise ConfigError(f"{point.run_dir.root} was run with a different config "
                          f"({described}): choose another --name or remove it")


def _check_data(points: Sequence[Point]) -> None:
    """Every token file opens, fits its point's vocabulary and context, and (for the validation
    file) shares the training data's tokenizer."""
    checked: set[tuple] = set()
    for point in points:
        model, data = point.config.model, point.config.data
        for path, tokenizer_of in ((data.train_path, None), (data.valid_path, data.train_path)):
            key = (str(path), model.vocab_size, model.context_length, str(tokenizer_of))
            if key not in checked:
                load_tokens(path, vocab_size=model.vocab_size,
                            context_length=model.context_length, tokenizer_of=tokenizer_of)
                checked.add(key)
