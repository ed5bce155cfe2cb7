"""The standard pretraining texts, downloaded from the Hugging Face Hub as plain UTF-8 files.

``download("tinystories", "data/tinystories")`` leaves ``train.txt`` and ``valid.txt`` there, the
layout every other command expects. Files already present are kept, so a second call costs
nothing. Compressed files (the OWT sample ships as ``.gz``) are decompressed on the way.
``fetch_start`` fetches only the first megabytes of a split (one HTTP range request, cached):
what a quick run needs of a multi-gigabyte corpus.

Without network the Hub client retries for half a minute before giving up; a quick probe of the
Hub first (or ``HF_HUB_OFFLINE=1``) turns that into an error within seconds that says what to do.
"""

import gzip
import os
import re
import shlex
import shutil
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lmlab.atomic import atomic_path
from lmlab.errors import DataError, first_line
from lmlab.progress import bar_disabled
from lmlab.tokenizer.tokenizer import END_OF_TEXT


@dataclass(frozen=True)
class HubDataset:
    """A dataset repository on the Hub and the file of each split in it."""

    repo_id: str
    files: dict[str, str]
    """Split name (``train``, ``valid``) -> file name in the repository."""


DATASETS = {
    "tinystories": HubDataset("roneneldan/TinyStories", {
        "train": "TinyStoriesV2-GPT4-train.txt", "valid": "TinyStoriesV2-GPT4-valid.txt"}),
    "owt": HubDataset("stanford-cs336/owt-sample", {
        "train": "owt_train.txt.gz", "valid": "owt_valid.txt.gz"}),
}
"""TinyStoriesV2-GPT4 (2.2 GB + 22 MB) and the CS336 OpenWebText sample (11 GB + 290 MB)."""

PROBE_TIMEOUT_S = 5.0

_VOCAB_SUFFIX = re.compile(r"(?P<dataset>.+)-\d+k?")
"""A token folder's name: its text's folder, then the vocabulary size (``owt-1k``,
``tinystories-10k``)."""


def download(name: str, out_dir: str | Path, *, timeout_s: float = PROBE_TIMEOUT_S,
             progress: bool = True) -> dict[str, Path]:
    """Make sure ``out_dir/<split>.txt`` exists for each split of dataset ``name``; return them.

    The Hub client draws its own download bars (``HF_HUB_DISABLE_PROGRESS_BARS=1`` hides them);
    ``progress`` controls the decompression bar.

    Raises :class:`~lmlab.errors.DataError` within about ``timeout_s`` seconds when the Hub
    cannot be reached (or ``HF_HUB_OFFLINE`` is set), and when a download fails.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    dataset, out_dir = DATASETS[name], Path(out_dir)
    targets = {split: out_dir / f"{split}.txt" for split in dataset.files}
    missing = [split for split, path in targets.items() if not path.is_file()]
    if missing:
        endpoint = _check_hub_reachable(dataset, timeout_s)
        staging = out_dir / ".download"
        for split in missing:
            fetched = _fetch(dataset, dataset.files[split], staging, endpoint, timeout_s)
            install_text(fetched, targets[split], progress=progress)
        shutil.rmtree(staging, ignore_errors=True)
    return targets


def install_text(src: Path, dest: Path, *, progress: bool = False) -> None:
    """Move a downloaded text file to ``dest``, decompressing it when its name ends in ``.gz``
    (with a progress bar on stderr when ``progress``: the OWT sample is 11 GB of text).

    ``dest`` appears whole or not at all; a corrupt ``.gz`` is a :class:`DataError`.
    """
    if src.suffix != ".gz":
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        return
    bar = tqdm(total=src.stat().st_size, unit="B", unit_scale=True, desc=f"gunzip {src.name}",
               disable=not progress)
    try:
        with (bar, open(src, "rb") as raw, gzip.GzipFile(fileobj=raw) as compressed,
              atomic_path(dest) as tmp, open(tmp, "wb") as out):
            while chunk := compressed.read(1 << 20):
                out.write(chunk)
                bar.update(raw.tell() - bar.n)  # progress in compressed bytes read
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{src}: not a valid gzip file ({exc})") from None
    src.unlink()


def hub_endpoint() -> str:
    """The Hub's address: ``HF_ENDPOINT`` (e.g. a mirror) or ``https://huggingface.co``."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def cache_dir() -> Path:
    """Where fetched text is kept: ``LMLAB_CACHE``, else ``$XDG_CACHE_HOME/lmlab`` (default
    ``~/.cache/lmlab``)."""
    if os.environ.get("LMLAB_CACHE"):
        return Path(os.environ["LMLAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lmlab"


def fetch_start(name: str, split: str, max_bytes: int, cache: Path | None = None, *,
                timeout_s: float = PROBE_TIMEOUT_S, progress: bool = True) -> Path:
    """The first whole documents (at most ``max_bytes``) of a dataset's split, fetched with one
    HTTP range request into ``cache`` (default :func:`cache_dir`) and read from there next time.

    Raises :class:`~lmlab.errors.DataError` within about ``timeout_s`` seconds without network.
    """
    dataset = DATASETS[name]
    filename = dataset.files[split]
    if filename.endswith(".gz"):
        raise DataError(f"{name} ships compressed: its start cannot be fetched alone; use "
                        f"`lmlab data download {name}`")
    cached = (cache or cache_dir()) / name / f"{split}-first-{max_bytes}-bytes.txt"
    if cached.is_file():
        return cached
    endpoint = _check_hub_reachable(dataset, timeout_s)
    from huggingface_hub import hf_hub_url  # imported here: only downloads need it

    url = hf_hub_url(dataset.repo_id, filename, repo_type="dataset", endpoint=endpoint)
    request = urllib.request.Request(url, headers={"Range": f"bytes=0-{max_bytes - 1}",
                                                   "User-Agent": "lmlab"})
    data = bytearray()
    try:
        with (tqdm(total=max_bytes, unit="B", unit_scale=True, desc=f"{filename} (start)",
                   disable=bar_disabled(progress)) as bar,
              urllib.request.urlopen(request, timeout=max(timeout_s, 30.0)) as response):
            while len(data) < max_bytes and (chunk := response.read(1 << 20)):
                data += chunk  # a server that ignores the range sends it all: stop at max_bytes
                bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"fetching the start of {filename} from {dataset.repo_id} failed: "
                        f"{first_line(exc)}") from None
    with atomic_path(cached) as tmp:
        tmp.write_bytes(_whole_documents(bytes(data[:max_bytes]), END_OF_TEXT, url))
    return cached


def _offline_message(dataset: HubDataset, reason: str) -> str:
    files = ", ".join(dataset.files.values())
    return (f"{reason}: download {files} from https://huggingface.co/datasets/{dataset.repo_id} "
            f"another way, or train on local text: lmlab quickstart --train-text FILE "
            f"--valid-text FILE")


def _check_hub_reachable(dataset: HubDataset, timeout_s: float) -> str:
    """Return the endpoint if it answers within ``timeout_s``; else a :class:`DataError`."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        raise DataError(_offline_message(dataset, "HF_HUB_OFFLINE is set"))
    endpoint = hub_endpoint()
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout_s)
    except urllib.error.HTTPError:
        pass  # the server answered, if unhappily: the network works
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(_offline_message(dataset, f"cannot reach {endpoint} ({reason})")) from None
    return endpoint


def _fetch(dataset: HubDataset, filename: str, staging: Path, endpoint: str,
           timeout_s: float) -> Path:
    """Download one file of the dataset repository into ``staging`` (with a progress bar)."""
    from huggingface_hub import hf_hub_download  # imported here: only downloads need it

    try:
        return Path(hf_hub_download(dataset.repo_id, filename, repo_type="dataset",
                                    local_dir=staging, endpoint=endpoint, etag_timeout=timeout_s))
    except Exception as exc:  # the client raises many kinds (HTTP, offline, disk): report any
        raise DataError(f"downloading {filename} from {dataset.repo_id} failed: "
                        f"{first_line(exc)}") from None


def head(src: str | Path, dest: str | Path, max_bytes: int, separator: str = END_OF_TEXT
         ) -> Path:
    """``src`` itself when it holds at most ``max_bytes``; else its first whole documents (cut
    after the last ``separator`` within ``max_bytes``, or the last newline) written to ``dest``.

    A quick run needs only the start of a multi-gigabyte corpus; cutting at a document boundary
    keeps every document whole and every UTF-8 character intact.
    """
    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise DataError(f"{src}: no such file")
    if src.stat().st_size <= max_bytes:
        return src
    with open(src, "rb") as f:
        data = f.read(max_bytes)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(_whole_documents(data, separator, src))
    return dest


def _whole_documents(data: bytes, separator: str, source: object) -> bytes:
    """``data`` up to and including its last ``separator`` (else its last newline), so that
    every document and every UTF-8 character in it is whole."""
    marker = separator.encode("utf-8")
    end = data.rfind(marker)
    end = end + len(marker) if end >= 0 else data.rfind(b"\n") + 1
    if end <= 0:
        raise DataError(f"{source}: no {separator} or newline in its first {len(data):,} bytes "
                        f"to cut at")
    return data[:end]


def token_file_commands(bin_path: str | Path, vocab_size: int) -> list[str]:
    """The commands that make the missing token file ``bin_path`` for a ``vocab_size`` model, in
    the layout the presets read: ``data/<dataset>-<size>/<split>.bin`` encoded from
    ``data/<dataset>/<split>.txt`` with the tokenizer ``data/<dataset>-<size>/tokenizer``
    trained on ``train.txt``. A step whose output is already there (the text, the tokenizer) is
    left out: a second tokenizer would not match the token files the first one wrote.

    Used by ``lmlab sweep --dry-run`` (the "no such token file" error of :mod:`lmlab.tokens`
    cannot: it does not know the vocabulary size).

    >>> for line in token_file_commands("data/owt-1k/valid.bin", 1024): print(line)
    ... # doctest: +NORMALIZE_WHITESPACE
    lmlab data download owt
    lmlab tokenizer train --input data/owt/train.txt --vocab-size 1024
        --special-token '<|endoftext|>' --out data/owt-1k/tokenizer
    lmlab tokenizer encode --tokenizer data/owt-1k/tokenizer --input data/owt/valid.txt
        --out data/owt-1k/valid.bin
    """
    bin_path = Path(bin_path)
    folder = bin_path.parent
    named = _VOCAB_SUFFIX.fullmatch(folder.name)
    dataset = named["dataset"] if named else folder.name
    text_dir = folder.parent / dataset if named else folder
    text, train_text = text_dir / f"{bin_path.stem}.txt", text_dir / "train.txt"
    tokenizer = folder / "tokenizer"
    q = shlex.quote
    commands = []
    if not (text.is_file() and train_text.is_file()):
        if dataset in DATASETS:
            out = "" if text_dir == Path("data") / dataset else f" --out {q(str(text_dir))}"
            commands.append(f"lmlab data download {dataset}{out}")
        else:
            commands.append(f"# put the text in {text_dir}/{{train,valid}}.txt")
    if not (tokenizer / "vocab.json").is_file():
        commands.append(f"lmlab tokenizer train --input {q(str(train_text))} --vocab-size "
                        f"{vocab_size} --special-token {q(END_OF_TEXT)} --out {q(str(tokenizer))}")
    commands.append(f"lmlab tokenizer encode --tokenizer {q(str(tokenizer))} --input "
                    f"{q(str(text))} --out {q(str(bin_path))}")
    return commands
