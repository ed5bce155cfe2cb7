"""Planning a sweep: every point resolved to a config and validated before the first run starts.

A typo in a grid key, a bad value, a schedule that cannot train as meant, two points that would
share a run directory, a run directory left by a different config or a token file that cannot
feed a point's model: each is an error here, so it costs nothing.

A sweep that searches a key (:mod:`lmlab.experiments.search`) is planned a round at a time:
:func:`plan` takes each series' values so far, :mod:`lmlab.experiments.rounds` adds more.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmlab.config import Config, flatten, format_value, load_config
from lmlab.errors import ConfigError
from lmlab.experiments.compare import SEED, differences, varied_keys
from lmlab.experiments.search import FIRST, significant, value_at
from lmlab.experiments.sweep import Sweep, point_name
from lmlab.optim import check_schedule
from lmlab.tokens import load_tokens
from lmlab.training.batch_probe import with_saved_batch
from lmlab.training.rundir import RunDir, enclosing_run, is_run_dir

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
    series: str | None = None
    """In a search, the other varied values' name (``""`` when only the searched key varies)."""
    index: int | None = None
    """In a search, the searched value's half-step index (see
    :func:`~lmlab.experiments.search.value_at`)."""

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
    missing: dict[Path, int] = field(default_factory=dict)
    """Token files not made yet, each with the vocabulary size of the model that reads it: only
    a dry run plans without them (:func:`plan` with ``missing_ok``)."""
    warnings: list[str] = field(default_factory=list)
    """One ``warning:`` line per odd schedule (a warmup over half the run), naming its points:
    the sweep says each once, before its runs."""
    searched: dict[str, list[int]] = field(default_factory=dict)
    """In a search, each series' indices planned so far."""

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
            **({"search": {**self.sweep.search.model_dump(), "values": {
                series: [value_at(self.sweep.search, i) for i in indices]
                for series, indices in self.searched.items()}}} if self.sweep.search else {}),
            "points": [{"name": p.name, "group": p.group, "words": list(p.words)}
                       for p in self.points],
        }


def plan(sweep: Sweep, *, missing_ok: bool = False,
         searched: Mapping[str, Sequence[int]] | None = None) -> Plan:
    """Resolve and validate every point before anything runs.

    A search plans, for each series, the indices ``searched`` names (its first round's by
    default): :func:`lmlab.experiments.rounds.next_round` asks for more.

    Raises :class:`ConfigError` for bad grid words, unknown keys or values at any point, points
    that would share a run directory, or a run directory left by a different config; and
    :class:`DataError` for token files that cannot feed a point's model. With ``missing_ok`` (a
    dry run) token files not made yet are collected in :attr:`Plan.missing` instead, so that all
    of them are listed at once; those that exist are still checked.
    """
    base = load_config(sweep.config, sweep.overrides)
    root = base.run.runs_dir / (sweep.name or sweep.config.stem)
    _check_root(root)
    varied = sweep.combinations()
    search = sweep.search
    if search and not isinstance(flatten(base.model_dump(mode="json")).get(search.key), float):
        raise ConfigError(f"search.key {search.key}: a search tries values a factor apart, so it "
                          "needs a real-valued config key such as optim.lr_max; grid the "
                          f"others (--grid {search.key}=A,B,C)")
    for words in varied:
        for word in [*words, *([f"{search.key}="] if search else [])]:
            key = word.partition("=")[0].strip()
            if search and key == search.key and word != f"{key}=":
                raise ConfigError(f"{key} is searched, so it cannot also be listed or gridded")
            if key in RESERVED:
                raise ConfigError(f"{key} cannot be swept: the sweep names each run")
            if sweep.fixed_tokens and key in ("train.max_steps", "train.max_tokens"):
                raise ConfigError(f"--fixed-tokens keeps the token budget, so {key} cannot vary")
            if sweep.seeds > 1 and key == SEED:
                raise ConfigError(f"{SEED} cannot vary in a sweep with --seeds: the sweep "
                                  "sets each run's seed")
    points = []
    indices: dict[str, list[int]] = {}
    for words in varied:
        series = point_name(words) if search else None
        if search:
            indices[series] = list((searched or {}).get(series, FIRST))
        for index in indices[series] if search else [None]:
            swept = [*words, f"{search.key}={format_value(value_at(search, index))}"] \
                if search else words
            points += _seeds(sweep, base, root, swept, _floor(sweep, base, index), series, index)
    _check_unique(points)
    _check_strangers(root, points)
    warnings = _check_schedules(points)
    for point in points:
        _check_same_config(point)
    missing = _check_data(points, missing_ok)
    return Plan(sweep, root, base, points, missing, warnings, indices)


def _floor(sweep: Sweep, base: Config, index: int | None) -> list[str]:
    """A searched peak rate carries ``optim.lr_min`` with it at the base config's ratio: the
    schedule keeps its shape, and a rate searched below the base's floor never climbs to it."""
    search = sweep.search
    if search is None or search.key != "optim.lr_max" or not base.optim.lr_min:
        return []
    ratio = base.optim.lr_min / base.optim.lr_max
    return [f"optim.lr_min={format_value(significant(value_at(search, index) * ratio))}"]


def _seeds(sweep: Sweep, base: Config, root: Path, words: Sequence[str], unnamed: Sequence[str],
           series: str | None, index: int | None) -> list[Point]:
    """The runs of one point, one per seed, named by the values they train at (a rescaled rate
    is named by its rescaled value: ``batch_size-1__lr_max-0.00075``); ``unnamed`` words follow
    from the named ones (a searched rate's floor)."""
    points = []
    for offset in range(sweep.seeds):
        seed_words = [f"{SEED}={base.train.seed + offset}"] if sweep.seeds > 1 else []
        point_words = [*sweep.overrides, *words, *unnamed, *seed_words]
        config = load_config(sweep.config, point_words)
        derived = _derived_words(sweep, base, config)
        changed = {word.partition("=")[0]: word for word in derived}
        group = point_name([changed.get(word.partition("=")[0].strip(), word) for word in words])
        name = f"{group}__seed-{base.train.seed + offset}" if seed_words else group
        run_words = [f"run.runs_dir={root}", f"run.name={name}", "run.resume=auto"]
        config = load_config(sweep.config, [*point_words, *derived, *run_words])
        points.append(Point(name, (*point_words, *derived, *run_words), config, group, series,
                            index))
    return points


def _derived_words(sweep: Sweep, base: Config, config: Config) -> list[str]:
    """The overrides that keep the token budget and rescale the learning rate.

    Keeping the token budget also keeps the evaluations and checkpoints at the same token
    counts: their step intervals scale with the tokens per step (batch 1 evaluates 16 times less
    often in steps than batch 16, so it is not evaluated 16 times as often in tokens). Rescaling
    the rate scales ``optim.lr_min`` with ``optim.lr_max``: the schedule keeps its shape, and a
    small batch's peak never falls below a floor meant for the base's. A rescaled rate is
    rounded to 4 significant digits, so that the point's name states it whole."""
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
        scale = lr_scale(sweep, base, config)
        words.append(f"optim.lr_max={format_value(significant(config.optim.lr_max * scale))}")
        if config.optim.lr_min:
            words.append(f"optim.lr_min={format_value(significant(config.optim.lr_min * scale))}")
    return words


def lr_scale(sweep: Sweep, base: Config, config: Config) -> float:
    """The factor ``--lr-scaling`` multiplies a point's rates by (1 without it): its tokens per
    step over the base's, to the power 1/2 (``sqrt``) or 1 (``linear``)."""
    if sweep.lr_scaling is None:
        return 1.0
    ratio = config.tokens_per_step / base.tokens_per_step
    return ratio ** (0.5 if sweep.lr_scaling == "sqrt" else 1.0)


def _check_root(root: Path) -> None:
    """A sweep's folder is not a run directory or inside one (``runs/tinystories-cpu`` is a
    run: a sweep of that name would put its points inside it)."""
    run = enclosing_run(root)
    if run is not None:
        where = "is" if root.exists() and run.samefile(root) else "lies in"
        raise ConfigError(f"the sweep's folder {root} {where} the run directory {run}: choose "
                          "another --name (or run.runs_dir)")


def _check_strangers(root: Path, points: Sequence[Point]) -> None:
    """A folder that no sweep made (no ``sweep.json``) may hold runs of this sweep's points
    only: runs trained there one by one would be mixed with its points."""
    if not root.is_dir() or (root / "sweep.json").is_file():
        return
    names = {point.name for point in points}
    strangers = sorted(child.name for child in root.iterdir()
                       if child.name not in names and is_run_dir(child))
    if strangers:
        raise ConfigError(f"the sweep's folder {root} holds runs that no sweep made "
                          f"({', '.join(strangers[:3])}): choose another --name")


def _check_unique(points: Sequence[Point]) -> None:
    seen: set[str] = set()
    for point in points:
        if point.name in seen:
            raise ConfigError(f"two sweep points are both named {point.name!r}: a value is "
                              f"repeated in the grid or list")
        seen.add(point.name)


def _check_schedules(points: Sequence[Point]) -> list[str]:
    """Every point's schedule (:func:`~lmlab.optim.check_schedule`): the points that cannot train
    as meant are one error that names them all; a warning is listed once, with its points."""
    errors: dict[str, list[str]] = {}
    warnings: dict[str, list[str]] = {}
    for point in points:
        try:
            for line in check_schedule(point.config):
                warnings.setdefault(line.removeprefix("warning: "), []).append(point.group)
        except ConfigError as exc:
            errors.setdefault(str(exc), []).append(point.group)
    every = len({point.group for point in points})
    if errors:
        raise ConfigError("; ".join(f"{_which(names, every)}: {message}"
                                    for message, names in errors.items()))
    return [f"warning: {_which(names, every)}: {line}" for line, names in warnings.items()]


def _which(names: list[str], every: int) -> str:
    """The points ``names`` (seeds of one point counted once), or all ``every`` of them."""
    names = list(dict.fromkeys(names))
    if len(names) == every:
        return "the sweep's point" if every == 1 else f"all {every} points"
    return ("point " if len(names) == 1 else "points ") + ", ".join(names)


def _check_same_config(point: Point) -> None:
    """A run directory left by a sweep with other settings must not be resumed as this one."""
    if not point.run_dir.config.is_file():
        return
    raw = point.run_dir.read_config()
    saved, config = flatten(raw), with_saved_batch(point.config, raw.get("train", {}))  # auto
    changed = differences(flatten(config.model_dump(mode="json")), saved)
    if changed:
        described = "; ".join(f"{key}={format_value(saved.get(key))} (now {format_value(value)})"
                              for key, value in changed.items())
        raise ConfigError(f"{point.run_dir.root} was run with a different config "
                          f"({described}): choose another --name or remove it")


def _check_data(points: Sequence[Point], missing_ok: bool = False) -> dict[Path, int]:
    """Every token file opens, fits its point's vocabulary and context, and (for the validation
    file) shares the training data's tokenizer. With ``missing_ok``, the files that do not exist
    yet are returned (with their model's vocabulary size) rather than the first raising."""
    checked: set[tuple] = set()
    missing: dict[Path, int] = {}
    for point in points:
        model, data = point.config.model, point.config.data
        for path, tokenizer_of in ((data.train_path, None), (data.valid_path, data.train_path)):
            if missing_ok and not Path(path).is_file():
                missing.setdefault(Path(path), model.vocab_size)
                continue
            if tokenizer_of is not None and Path(tokenizer_of) in missing:
                tokenizer_of = None  # nothing to compare with yet
            key = (str(path), model.vocab_size, model.context_length, str(tokenizer_of))
            if key not in checked:
                load_tokens(path, vocab_size=model.vocab_size,
                            context_length=model.context_length, tokenizer_of=tokenizer_of)
                checked.add(key)
    return missing
