"""From a trained run to text: its model, the tokenizer its data was made with, and completions.

A weights file (:mod:`lmlab.weights`) carries its tokenizer. A run records its data
(``data.train_path`` in its config, as the user gave it, and in ``env.json`` the folder a relative
path is relative to: :meth:`RunDir.locate` finds it from any folder), and the data's sidecar
records the fingerprint of the tokenizer that wrote it and, when ``lmlab tokenizer encode`` wrote
it, the tokenizer's folder. :func:`find_tokenizer` looks there, then where the README recipe and
``lmlab quickstart`` put it (``tokenizer/`` next to the training ``.bin``), and checks the
fingerprint, so a wrong tokenizer is an error rather than garbled text.
"""

import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from lmlab.config import Config, ModelConfig
from lmlab.errors import DataError, TokenizerError
from lmlab.generate import Sampling, decode_stream, generate
from lmlab.nn import TransformerLM
from lmlab.text import plural
from lmlab.tokenizer import END_OF_TEXT, Tokenizer
from lmlab.tokenizer.tokenizer import VOCAB_FILE
from lmlab.tokens import TokenFile, TokenFileInfo, read_token_info
from lmlab.training.checkpoint import checkpoint_config
from lmlab.training.rundir import RunDir
from lmlab.weights import bundled_tokenizer, load_model, model_file


class TokenizerNotFound(TokenizerError):
    """A model whose tokenizer is neither bundled nor found: the message says where it was looked
    for, then how to give one (``tokenizer_dir``); a command adds its own flag to :attr:`what`."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: give the tokenizer's directory (tokenizer_dir)")
        self.what = what
        """The message without the hint."""


def load_run(path: str | Path, tokenizer_dir: str | Path | None = None,
             device: torch.device | str = "cpu") -> tuple[TransformerLM, ModelConfig, Tokenizer]:
    """The model (in ``eval()`` mode, on ``device``), its config and the tokenizer of a run
    directory, checkpoint file or weights file; ``tokenizer_dir`` overrides the tokenizer a
    weights file carries and the lookup of :func:`find_tokenizer`. Nothing to load is a one-line
    :class:`CheckpointError` saying why (:func:`lmlab.weights.model_file`)."""
    model, model_config = load_model(path, device=device)
    bundled = bundled_tokenizer(model_file(path)) if tokenizer_dir is None else None
    if bundled is not None:
        return model, model_config, Tokenizer.from_texts(bundled)
    config = run_config(path)
    if config is not None:
        return model, model_config, find_tokenizer(config, tokenizer_dir)
    if tokenizer_dir is None:
        raise TokenizerNotFound(f"{model_file(path)} carries no tokenizer")
    tokenizer = Tokenizer.load(tokenizer_dir)
    _check_fits(tokenizer, tokenizer_dir, model_config.vocab_size, None, None)
    return model, model_config, tokenizer


def run_config(path: str | Path) -> Config | None:
    """The training config of a run directory or checkpoint file (the one its checkpoint was
    saved with: its data, precision, schedule), or None for a weights file, which holds the
    model alone. Its data paths are absolute, found from this folder wherever the run was
    trained (:meth:`RunDir.locate`)."""
    file = model_file(path)
    if file.suffix == ".safetensors":
        return None
    config = checkpoint_config(file)
    run = RunDir(file.parent.parent if file.parent.name == "checkpoints" else file.parent)
    data = run.locate_data(config.data.model_dump(mode="json"), config.run_dir)
    return config.model_copy(update={"data": type(config.data).model_validate(data)})


def find_tokenizer(config: Config, tokenizer_dir: str | Path | None = None) -> Tokenizer:
    """The tokenizer that made the run's training data.

    Tries ``tokenizer_dir`` when given, else the folder the data's sidecar records (written by
    ``lmlab tokenizer encode``), ``<train .bin folder>/tokenizer`` and the ``.bin`` folder
    itself. When the training data's sidecar is readable, the tokenizer must have the
    fingerprint it records; otherwise it must at least fit the model's vocabulary.
    """
    train_path = Path(config.data.train_path)
    expected: str | None = None
    unreadable, candidates = "", [train_path.parent / "tokenizer", train_path.parent]
    try:
        info = read_token_info(train_path)
        expected = info.tokenizer_hash
        if info.tokenizer_dir is not None:
            candidates.insert(0, Path(info.tokenizer_dir))
    except DataError as exc:  # the data was moved or deleted: the tokenizer cannot be checked
        unreadable = "the file is gone" if not train_path.is_file() else str(exc)
    if tokenizer_dir is not None:
        tokenizer = Tokenizer.load(tokenizer_dir)
        _check_fits(tokenizer, tokenizer_dir, config.model.vocab_size, expected, train_path)
        return tokenizer
    for candidate in candidates:
        if (candidate / VOCAB_FILE).is_file():
            tokenizer = Tokenizer.load(candidate)
            if expected is None or tokenizer.fingerprint() == expected:
                _check_fits(tokenizer, candidate, config.model.vocab_size, expected,
                            train_path)
                return tokenizer
    looked = ", ".join(str(c) for c in candidates[:-1]) + f" or {candidates[-1]}"
    why = (f"none in {looked} matches its sidecar" if expected is not None
           else f"{unreadable}, and no tokenizer is in {looked}")
    raise TokenizerNotFound(f"cannot find the tokenizer that made {train_path} ({why})")


def _check_fits(tokenizer: Tokenizer, where: str | Path, vocab_size: int, expected: str | None,
                train_path: Path | None) -> None:
    if expected is not None and tokenizer.fingerprint() != expected:
        raise TokenizerError(f"tokenizer {where} is not the one that made the run's data "
                             f"{train_path} (its fingerprint differs from the sidecar's; if it "
                             f"is, the sidecar predates lmlab's current fingerprint: run "
                             f"`lmlab tokenizer encode` on the text again)")
    if tokenizer.vocab_size > vocab_size:
        raise TokenizerError(f"tokenizer {where} has {tokenizer.vocab_size} tokens, more than the "
                             f"model's {vocab_size} (model.vocab_size)")


def text_tokens(tokenizer: Tokenizer, path: str | Path, context_length: int) -> TokenFile:
    """A UTF-8 text file encoded with ``tokenizer``, in memory, as a :class:`TokenFile` (its
    ``source_bytes`` the file's size, for bits per byte): evaluation on any text, no ``.bin``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it as UTF-8 text ({exc})") from None
    ids = tokenizer.encode_to_numpy(text)
    if len(ids) < context_length + 1:
        raise DataError(f"{path} has {plural(len(ids), 'token')}, fewer than one context of "
                        f"{context_length} + 1 (model.context_length)")
    info = TokenFileInfo(dtype=ids.dtype.name, count=len(ids), vocab_size=tokenizer.vocab_size,
                         tokenizer_hash=tokenizer.fingerprint(),
                         special_tokens=tokenizer.special_ids, source_path=str(path.resolve()),
                         source_bytes=len(text.encode("utf-8")))
    return TokenFile(path, info, ids)


def complete(model: TransformerLM, tokenizer: Tokenizer, prompt: str, max_new_tokens: int,
             sampling: Sampling, seed: int | None = None,
             logprobs: list[float] | None = None) -> Iterator[str]:
    """Stream the text that continues ``prompt``, piece by piece, until ``<|endoftext|>`` (when
    the tokenizer has it) or ``max_new_tokens`` tokens.

    An empty prompt starts a fresh document: the model is conditioned on ``<|endoftext|>``, the
    token it saw before every document in training. Argument errors (a prompt longer than the
    context, bad sampling values) are raised here, before the first piece. ``logprobs`` receives
    the model's own log-probability of each sampled token (see :func:`generate`).
    """
    stop = tokenizer.special_ids.get(END_OF_TEXT)
    ids = tokenizer.encode(prompt)
    if not ids:
        if stop is None:
            raise TokenizerError(f"an empty prompt needs a tokenizer with {END_OF_TEXT} to start "
                                 f"from: give a prompt")
        ids = [stop]
    tokens = generate(model, ids, max_new_tokens, sampling, seed=seed,
                      stop_ids=[stop] if stop is not None else [], logprobs=logprobs)
    return decode_stream(tokens, tokenizer.vocab)


STUDY_TEMPERATURES = (0.7, 1.0, 1.2)
STUDY_TOP_PS = (0.9, 1.0)
"""The grid of the CS336 ``generate`` problem: fluency against diversity."""


@dataclass(frozen=True)
class StudySample:
    """One sample of :func:`generation_study`."""

    sampling: Sampling
    text: str
    """The continuation (without the prompt)."""
    num_tokens: int
    mean_logprob: float
    """Mean log-probability per token (nats) that the model itself (temperature 1, no
    truncation) gave the sample: near 0 is what the model finds most likely, lower is more
    surprising to it. NaN for an empty sample."""


def generation_study(model: TransformerLM, tokenizer: Tokenizer, prompt: str,
                     max_new_tokens: int = 256, seed: int = 0,
                     temperatures: Sequence[float] = STUDY_TEMPERATURES,
                     top_ps: Sequence[float] = STUDY_TOP_PS) -> list[StudySample]:
    """One sample per temperature x top-p (the same seed for each), up to ``max_new_tokens``
    or the first ``<|endoftext|>``, each with the mean log-probability the model gave it, so the
    trade-off between fluency and diversity reads from numbers as well as from the text."""
    samples = []
    for temperature in temperatures:
        for top_p in top_ps:
            sampling = Sampling(temperature=temperature, top_p=top_p)
            logprobs: list[float] = []
            text = "".join(complete(model, tokenizer, prompt, max_new_tokens, sampling, seed,
                                    logprobs))
            mean = statistics.fmean(logprobs) if logprobs else math.nan
            samples.append(StudySample(sampling, text, len(logprobs), mean))
    return samples
