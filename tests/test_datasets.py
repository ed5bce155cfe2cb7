"""Dataset download: fails fast and clearly without network; decompresses and places files."""

import gzip
import os
import subprocess
import sys
import time

import pytest

from lmlab.datasets import download, fetch_start, install_text
from lmlab.errors import DataError
from tests.helpers.hub import local_hub

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens, the refusal is instant


def test_plain_file_is_moved_into_place(tmp_path):
    src = tmp_path / "dl" / "valid.txt"
    src.parent.mkdir()
    src.write_text("Once upon a time.\n<|endoftext|>\n", encoding="utf-8")
    install_text(src, tmp_path / "out" / "valid.txt")
    assert (tmp_path / "out" / "valid.txt").read_text() == "Once upon a time.\n<|endoftext|>\n"
    assert not src.exists()


def test_gz_file_is_decompressed(tmp_path):
    text = "Héllo wörld<|endoftext|>" * 1000
    src = tmp_path / "owt_valid.txt.gz"
    src.write_bytes(gzip.compress(text.encode("utf-8")))
    install_text(src, tmp_path / "valid.txt")
    assert (tmp_path / "valid.txt").read_text(encoding="utf-8") == text
    assert not src.exists()


def test_corrupt_gz_is_an_error_that_leaves_no_file(tmp_path):
    src = tmp_path / "owt_train.txt.gz"
    src.write_bytes(gzip.compress(b"some text " * 1000)[:-40])  # truncated
    with pytest.raises(DataError, match="owt_train.txt.gz: not a valid gzip file"):
        install_text(src, tmp_path / "train.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["owt_train.txt.gz"]


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": UNREACHABLE}])
def test_without_network_download_fails_fast_and_says_what_to_do(tmp_path, monkeypatch, env):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"TinyStoriesV2-GPT4-train.txt.*local text: lmlab "
                                        r"quickstart --train-text FILE"):
        download("tinystories", tmp_path / "ts", timeout_s=2)
    assert time.perf_counter() - start < 3
    assert not (tmp_path / "ts").exists()


def test_files_already_there_need_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    for split in ("train", "valid"):
        (tmp_path / f"{split}.txt").write_text(split)
    assert download("owt", tmp_path) == {s: tmp_path / f"{s}.txt" for s in ("train", "valid")}


def test_unknown_dataset_names_the_choices(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'c4': choose one of tinystories, owt"):
        download("c4", tmp_path)


def test_download_cli_fails_fast_offline(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = UNREACHABLE
    cli = [sys.executable, "-m", "lmlab", "data", "download", "owt", "--out", str(tmp_path / "o")]
    done = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: cannot reach {UNREACHABLE}")
    assert "owt_train.txt.gz" in done.stderr and len(done.stderr.splitlines()) == 1



@pytest.fixture
def hub(monkeypatch):
    """A local Hub (``HF_ENDPOINT``) serving 2,000 short stories separated by <|endoftext|>."""
    body = "".join(f"Story {i}: Tom saw a cat, and it was a happy day.\n<|endoftext|>\n"
                   for i in range(2000)).encode()
    with local_hub(body, monkeypatch) as server:
        yield server


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "no-range-support"])
def test_fetch_start_takes_whole_documents_from_one_range_and_caches_them(hub, tmp_path,
                                                                         ranges):
    hub.ranges = ranges
    path = fetch_start("tinystories", "valid", 1000, tmp_path, progress=False)
    text = path.read_bytes()
    last_whole = hub.body.rfind(b"<|endoftext|>", 0, 1000)  # the last one whole in 1000 bytes
    assert text == hub.body[:last_whole + len("<|endoftext|>")] and len(text) > 900
    assert hub.requests == [("/datasets/roneneldan/TinyStories/resolve/main/"
                             "TinyStoriesV2-GPT4-valid.txt", "bytes=0-999")]
    assert fetch_start("tinystories", "valid", 1000, tmp_path, progress=False) == path
    assert len(hub.requests) == 1  # the second call read the cache


def test_fetch_start_offline_is_one_line_that_names_the_local_way(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="HF_HUB_OFFLINE is set: .* lmlab quickstart "
                                        "--train-text FILE --valid-text FILE"):
        fetch_start("tinystories", "train", 1000, tmp_path)
    assert list(tmp_path.iterdir()) == []
