"""`lmlab quickstart` argument checks: each bad input is an error before any work is done.

The quickstart itself runs in tests/test_readme.py, exactly as the README shows it."""

import re

import pytest

from lmlab.datasets import head
from lmlab.errors import ConfigError, DataError
from lmlab.quickstart import quickstart
from tests.helpers.tokenizer_refs import FIXTURES, need


@pytest.fixture
def text():
    return need(FIXTURES / "tinystories_sample.txt")


def test_needs_both_texts_or_neither(tmp_path, text):
    with pytest.raises(ConfigError, match="give both --train-text and --valid-text, or neither"):
        quickstart(tmp_path / "out", train_text=text)
    assert not (tmp_path / "out").exists()


def test_refuses_a_folder_that_is_not_empty(tmp_path, text):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="out already exists and is not empty"):
        quickstart(tmp_path / "out", text, text)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_a_missing_text_file_is_named(tmp_path, text):
    with pytest.raises(DataError, match="nope.txt: no such text file"):
        quickstart(tmp_path / "out", text, tmp_path / "nope.txt")
    assert not (tmp_path / "out").exists()


def test_a_bad_override_is_named(tmp_path, text):
    with pytest.raises(ConfigError, match="model.d_modle"):
        quickstart(tmp_path / "out", text, text, overrides=["model.d_modle=64"])


def test_without_texts_or_network_it_fails_fast_and_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(DataError, match="cannot reach .* --train-text FILE --valid-text FILE"):
        quickstart(tmp_path / "out", cache=tmp_path / "cache")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_run_s_warnings_reach_the_student(tmp_path, text, without_cxx):
    """The preset compiles; where it cannot (no C++ compiler), the quickstart says so."""
    lines: list[str] = []
    result = quickstart(tmp_path / "out", text, text, on_step=lines.append, overrides=[
        "train.max_steps=2", "optim.warmup_iters=1", "train.schedule_over_time=false",
        "model.vocab_size=300", "model.context_length=16", "model.num_layers=1",
        "train.eval_batches=1"])
    assert result.status == "finished"
    warning = "warning: train.compile=true, but no C++ compiler"
    assert any(line.startswith(warning) for line in lines)


def test_head_keeps_whole_documents(tmp_path):
    src = tmp_path / "big.txt"
    src.write_text("première histoire\n<|endoftext|>\nsecond story\n<|endoftext|>\nthird",
                   encoding="utf-8")
    assert head(src, tmp_path / "small.txt", 1 << 20) == src  # small enough: used as it is
    cut = head(src, tmp_path / "small.txt", 50)
    assert cut.read_text(encoding="utf-8") == "première histoire\n<|endoftext|>"


def test_head_needs_somewhere_to_cut(tmp_path):
    src = tmp_path / "one-line.txt"
    src.write_text("x" * 100)
    message = re.escape("no <|endoftext|> or newline in its first 10 bytes")
    with pytest.raises(DataError, match=message):
        head(src, tmp_path / "out.txt", 10)
    assert not (tmp_path / "out.txt").exists()
