"""`lmlab quickstart`: the whole pipeline once, at CPU scale, from text files to a trained run.

It is exactly what the README's recipe does by hand, one library call per step::

    text ─► train_bpe ─► tokenizer/ ─► tokenize_file ─► train.bin, valid.bin ─► train ─► run

with the ``tinystories-cpu`` preset (a model that learns visibly in ten minutes on two cores)
and the tokenizer's vocabulary taken from the config's ``model.vocab_size``. Without text files
it fetches the start of TinyStories from the Hub (cached, see :func:`lmlab.datasets.fetch_start`).
Everything it writes goes under one folder::

    <out>/data/tokenizer/  <out>/data/{train,valid}.bin  <out>/<run.name>/ (the run directory)
"""

from collections.abc import Callable, Sequence
from pathlib import Path

from lmlab.config import Config, load_config, preset_path
from lmlab.datasets import cache_dir, fetch_start, head
from lmlab.errors import ConfigError, DataError
from lmlab.optim import check_schedule
from lmlab.tokenizer import END_OF_TEXT, Tokenizer, train_bpe
from lmlab.tokens import tokenize_file
from lmlab.training.loop import train
from lmlab.training.outcome import RunResult

CONFIG = "tinystories-cpu"
"""The preset trained when no config is given (``lmlab presets tinystories-cpu`` prints it)."""
MAX_TEXT_BYTES = {"train": 32 << 20, "valid": 2 << 20}
"""Most text used per split: plenty for ten CPU minutes, and a validation pass of seconds. A
bigger file (the 2.2 GB TinyStories train split) is cut to its first whole documents."""


def default_config() -> Path:
    """The packaged :data:`CONFIG` preset, wherever lmlab is installed and run from."""
    return preset_path(CONFIG)


def quickstart(
    out: str | Path,
    train_text: str | Path | None = None,
    valid_text: str | Path | None = None,
    *,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    cache: str | Path | None = None,
    show_progress: bool = False,
    on_step: Callable[[str], None] = lambda message: None,
) -> RunResult:
    """Train a tokenizer, tokenize, and train the preset on ``train_text`` / ``valid_text``
    (default: the start of TinyStories, fetched into ``cache``, by default
    :func:`~lmlab.datasets.cache_dir`); return how the run ended.

    ``overrides`` are config overrides (``train.max_steps=20``); the data paths and
    ``run.runs_dir`` are the quickstart's own. ``on_step`` receives a line per step, for the CLI
    to show, and the run's own notes (a warning, a progress line when no bar is drawn). Bad
    arguments are errors before any work: both text files or neither, an ``out`` folder that must
    not exist yet (or be empty), a valid config and schedule.
    """
    out = Path(out)
    config = _config(config_path, overrides, out)
    check_schedule(config)  # a schedule that cannot be meant, before minutes of tokenizing
    if (train_text is None) != (valid_text is None):
        raise ConfigError("give both --train-text and --valid-text, or neither (TinyStories)")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} already exists and is not empty: remove it or choose --out")
    if train_text is None or valid_text is None:
        folder = Path(cache) if cache is not None else cache_dir()
        on_step(f"fetching the start of TinyStoriesV2 from the Hub (cached in {folder})")
        texts = {split: fetch_start("tinystories", split, MAX_TEXT_BYTES[split], folder,
                                    progress=show_progress) for split in ("train", "valid")}
    else:
        texts = {"train": Path(train_text), "valid": Path(valid_text)}
        for path in texts.values():
            if not path.is_file():
                raise DataError(f"{path}: no such text file")
    data = out / "data"
    texts = {split: _head(path, data / f"{split}.txt", MAX_TEXT_BYTES[split], on_step)
             for split, path in texts.items()}

    vocab_size = config.model.vocab_size
    on_step(f"training a {vocab_size:,}-token BPE tokenizer on {texts['train']}")
    vocab, merges = train_bpe(texts["train"], vocab_size, [END_OF_TEXT])
    tokenizer = Tokenizer(vocab, merges, [END_OF_TEXT])
    tokenizer.save(data / "tokenizer")
    for split in ("train", "valid"):
        on_step(f"tokenizing {texts[split]} into {data / f'{split}.bin'}")
        tokenize_file(tokenizer, texts[split], data / f"{split}.bin", progress=show_progress)
    on_step(f"training {config.run.name} in {config.run_dir}")
    return train(config, show_progress=show_progress, say=on_step)


def _config(config_path: str | Path | None, overrides: Sequence[str], out: Path) -> Config:
    """The preset with ``overrides``, reading its data from and writing its run under ``out``."""
    config = load_config(config_path or default_config(), overrides)
    config.data.train_path = out / "data" / "train.bin"
    config.data.valid_path = out / "data" / "valid.bin"
    config.run.runs_dir = out
    return config


def _head(path: Path, dest: Path, max_bytes: int, on_step: Callable[[str], None]) -> Path:
    """:func:`~lmlab.datasets.head`, saying so when it cuts."""
    used = head(path, dest, max_bytes)
    if used != path:
        on_step(f"using the first {used.stat().st_size:,} bytes of {path}")
    return used
