"""`lmlab tokenizer train` and `lmlab tokenizer encode` (old name: `lmlab tokenize`) end to end,
token files and their sidecars."""

import doctest
import json
import subprocess
import sys
from collections import Counter
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab import tokens
from lmlab.errors import DataError
from lmlab.tokenizer import Tokenizer, train_bpe
from lmlab.tokenizer.pretokenize import (
    count_pretokens,
    find_chunk_boundaries,
    read_text,
    special_token_regex,
)
from lmlab.tokens import load_tokens, read_token_info, sidecar_path, token_dtype
from tests.helpers.lmlab_cli import cli
from tests.helpers.tokenizer_refs import FIXTURES, need

EOT = "<|endoftext|>"


@pytest.fixture
def trained(tmp_path, capsys):
    """A small tokenizer trained through the CLI on the TinyStories fixture."""
    text = need(FIXTURES / "tinystories_sample.txt")
    code, out, _ = cli(
        capsys, "tokenizer", "train", "--input", text, "--vocab-size", 400,
        "--special-token", EOT, "--workers", 2, "--out", tmp_path / "tok",
    )  # fmt: skip
    assert code == 0 and "wrote 400 tokens (143 merges)" in out
    return tmp_path / "tok"


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_bin_equals_encode(trained, tmp_path, monkeypatch, capsys, workers):
    monkeypatch.setattr(tokens, "CHUNK_BYTES", 700)  # many chunks even for a small file
    monkeypatch.setattr(tokens, "WORKER_MIN_BYTES", 700)  # and every worker used
    source = FIXTURES / "tinystories_sample.txt"
    out = tmp_path / "data" / "train.bin"
    code, said, err = cli(
        capsys, "tokenizer", "encode", "--tokenizer", trained, "--input", source,
        "--out", out, "--workers", workers,
    )  # fmt: skip
    assert code == 0, err
    tok = Tokenizer.load(trained)
    expected = tok.encode(source.read_text(encoding="utf-8"))
    ratio = source.stat().st_size / len(expected)  # the compression CS336 asks to report
    assert said.endswith(f": {ratio:.2f} bytes per token (the compression ratio)\n")
    assert load_tokens(out).tokens.tolist() == expected
    info = read_token_info(out)
    assert info.dtype == "uint16" and info.count == len(expected) and info.vocab_size == 400
    assert info.source_bytes == source.stat().st_size and info.source_path == str(source.resolve())
    assert info.tokenizer_hash == tok.fingerprint() and info.special_tokens == {EOT: 0}
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.bin", "train.bin.json"]


def test_tokenize_is_the_old_name_of_tokenizer_encode(trained, tmp_path, capsys):
    """Scripts written for `lmlab tokenize` keep working: the same command, the same files."""
    source = FIXTURES / "tinystories_sample.txt"
    said = {}
    for name, words in {"new": ["tokenizer", "encode"], "old": ["tokenize"]}.items():
        code, said[name], err = cli(capsys, *words, "--tokenizer", trained, "--input", source,
                                    "--out", tmp_path / name / "train.bin", "--workers", 1)
        assert code == 0, err
    assert said["old"] == said["new"].replace(str(tmp_path / "new"), str(tmp_path / "old"))
    assert ((tmp_path / "old" / "train.bin").read_bytes()
            == (tmp_path / "new" / "train.bin").read_bytes())


def test_help_explains_every_option(capsys):
    for command in (["tokenizer", "train"], ["tokenizer", "encode"], ["tokenize"]):
        code, out, _ = cli(capsys, *command, "--help")
        assert code == 0 and "--workers" in out and "--out" in out and "--input" in out


def test_tokenizer_commands_import_neither_torch_nor_matplotlib(trained, tmp_path):
    """Each takes seconds to import (`lmlab tokenize --help` took 4.6 s), and the tokenizer
    commands use neither: the CLI imports what a command runs when it runs."""
    source = FIXTURES / "tinystories_sample.txt"
    script = (
        "import sys\n"
        "from lmlab.cli import main\n"
        f"sys.argv = ['lmlab', 'tokenizer', 'encode', '--tokenizer', {str(trained)!r},"
        f" '--input', {str(source)!r}, '--out', {str(tmp_path / 'out.bin')!r}]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print(sorted({'torch', 'matplotlib'} & set(sys.modules)))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "[]"
    assert load_tokens(tmp_path / "out.bin").tokens.tolist() == Tokenizer.load(trained).encode(
        source.read_text(encoding="utf-8")
    )


def test_dtype_follows_vocabulary_size():
    assert token_dtype(256) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "file is empty"),
        (b"ok text " * 300 + b"\xff\xfe rest", "invalid UTF-8 at byte offset 2400"),
    ],
)
def test_tokenize_bad_input_leaves_no_output(
    trained, tmp_path, capsys, content, message
):
    source = tmp_path / "in.txt"
    if content is not None:
        source.write_bytes(content)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = cli(
        capsys, "tokenizer", "encode", "--tokenizer", trained, "--input", source,
        "--out", out_dir / "x.bin", "--workers", 2,
    )  # fmt: skip
    assert code == 1 and err.startswith("error: ") and message in err
    assert err.count("\n") == 1
    assert list(out_dir.iterdir()) == []


def test_tokenize_with_a_broken_tokenizer(trained, tmp_path, capsys):
    (trained / "merges.txt").write_text("not a merge line at all\n", encoding="utf-8")
    code, _, err = cli(
        capsys, "tokenizer", "encode", "--tokenizer", trained,
        "--input", FIXTURES / "tinystories_sample.txt", "--out", tmp_path / "x.bin",
    )  # fmt: skip
    assert code == 1 and "merges.txt:1: expected two tokens" in err
    assert not (tmp_path / "x.bin").exists()


def test_train_with_too_small_vocabulary(tmp_path, capsys):
    text = tmp_path / "text.txt"  # (not the shared fixture: this error must show without it)
    text.write_text("Once upon a time there was a cat.\n", encoding="utf-8")
    code, _, err = cli(
        capsys, "tokenizer", "train", "--input", text,
        "--vocab-size", 100, "--out", tmp_path / "tok",
    )  # fmt: skip
    assert code == 1
    assert err == "error: vocab_size 100 is smaller than 256 bytes + 0 special tokens\n"
    assert not (tmp_path / "tok").exists()


@pytest.fixture
def token_file(tmp_path):
    tok = Tokenizer({b: bytes([b]) for b in range(256)}, [], [EOT])
    source = tmp_path / "s.txt"
    source.write_text("hello world" + EOT, encoding="utf-8")
    tokens.tokenize_file(tok, source, tmp_path / "s.bin", num_workers=1)
    return tmp_path / "s.bin"


def test_sidecar_records_the_source(token_file):
    info = json.loads(sidecar_path(token_file).read_text())
    assert info["count"] == 12 and info["source_bytes"] == 11 + len(EOT)
    assert info["special_tokens"] == {EOT: 256} and info["vocab_size"] == 257


def test_bin_shorter_than_its_sidecar_says(token_file):
    token_file.write_bytes(token_file.read_bytes()[:-2])
    with pytest.raises(DataError, match="holds 22 bytes but its sidecar says 12 uint16 ids"):
        load_tokens(token_file)


def test_missing_sidecar(token_file):
    sidecar_path(token_file).unlink()
    with pytest.raises(DataError, match="sidecar missing"):
        load_tokens(token_file)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: "{", "not valid JSON"),
        (lambda s: json.dumps({k: v for k, v in json.loads(s).items() if k != "count"}), "not an"),
        (lambda s: s.replace('"uint16"', '"float32"'), "dtype 'float32'"),
    ],
)
def test_malformed_sidecar(token_file, edit, message):
    side = sidecar_path(token_file)
    side.write_text(edit(side.read_text()))
    with pytest.raises(DataError, match=message):
        load_tokens(token_file)


def test_missing_token_file(tmp_path):
    with pytest.raises(DataError, match="no such token file"):
        load_tokens(tmp_path / "nope.bin")


def test_the_tokenizer_guide_commands_run(tmp_path, monkeypatch, capsys):
    """The first block of docs/tokenizer.md, as written, on a small text in a fresh folder (the
    text stands in for its download)."""
    from tests.helpers.paths import REPO
    from tests.helpers.readme import bash_blocks, commands

    data = tmp_path / "data" / "tinystories"
    data.mkdir(parents=True)
    for split in ("train", "valid"):
        (data / f"{split}.txt").write_bytes(need(FIXTURES / "tinystories_sample.txt").read_bytes())
    monkeypatch.chdir(tmp_path)
    for words in commands(bash_blocks(path=REPO / "docs" / "tokenizer.md")[0]):
        if words[1:3] == ["data", "download"]:
            continue
        code, _, err = cli(capsys, *words[1:])
        assert code == 0, err
    tokens_dir = tmp_path / "data" / "tinystories-10k"  # named by its vocabulary
    tokenizer = Tokenizer.load(tokens_dir / "tokenizer")
    text = (data / "train.txt").read_text(encoding="utf-8")
    assert (tokens_dir / "valid.bin").is_file()
    assert load_tokens(tokens_dir / "train.bin").tokens.tolist() == tokenizer.encode(text)


def test_docstring_examples():
    assert doctest.testmod(tokens).failed == 0


@pytest.fixture(scope="module")
def small_tokenizer() -> Tokenizer:
    return Tokenizer(*train_bpe(need(FIXTURES / "corpus.en"), 600, [EOT], num_workers=1), [EOT])


@settings(max_examples=60, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(["the", " the", "  ", "\n", "\n\n", " ", "é", "日本", "'s", "1", "!", EOT]),
        max_size=40,
    ).map("".join),
    chunk_bytes=st.integers(1, 40),
)
def test_chunks_cut_where_whole_text_would(small_tokenizer, tmp_path_factory, text, chunk_bytes):
    """Pieces between chunk boundaries encode and count exactly like the whole file."""
    path = tmp_path_factory.mktemp("chunks") / "t.txt"
    path.write_text(text, encoding="utf-8")
    bounds = find_chunk_boundaries(path, chunk_bytes, [EOT])
    pieces = [read_text(path, a, b) for a, b in pairwise(bounds)]
    assert "".join(pieces) == text and bounds[0] == 0 and bounds[-1] == len(text.encode())
    encoded = [i for piece in pieces for i in small_tokenizer.encode(piece)]
    assert encoded == small_tokenizer.encode(text)
    regex = special_token_regex([EOT])
    counted = sum((count_pretokens(piece, regex) for piece in pieces), Counter())
    assert counted == count_pretokens(text, regex)


def test_tokenizer_train_fills_no_folder_of_other_files(trained, tmp_path, capsys):
    """A tokenizer folder is written over (training again), a data folder is not."""
    text = tmp_path / "text.txt"
    text.write_text("Once upon a time there was a cat. " * 20, encoding="utf-8")
    words = ["tokenizer", "train", "--input", text, "--vocab-size", 260]
    assert cli(capsys, *words, "--out", trained)[0] == 0
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.bin").write_bytes(b"\0\0")
    code, _, err = cli(capsys, *words, "--out", data)
    assert code == 1 and err == (f"error: {data} holds files that lmlab tokenizer train did not "
                                 "write (train.bin): choose another --out, or pass --force to "
                                 "write into it\n")
    assert [p.name for p in data.iterdir()] == ["train.bin"]
    assert cli(capsys, *words, "--out", data, "--force")[0] == 0
    assert (data / "vocab.json").is_file() and (data / "train.bin").read_bytes() == b"\0\0"


def test_encode_writes_over_its_own_token_file_but_not_another_file(trained, tmp_path, capsys):
    source = FIXTURES / "tinystories_sample.txt"
    words = ["tokenizer", "encode", "--tokenizer", trained, "--input", source, "--workers", 1]
    out = tmp_path / "train.bin"
    for _ in range(2):  # encoding again over its own file
        code, _, err = cli(capsys, *words, "--out", out)
        assert code == 0, err
    mine = tmp_path / "mine.bin"
    mine.write_bytes(b"my own binary")
    code, _, err = cli(capsys, *words, "--out", mine)
    assert code == 1 and err == (f"error: {mine} exists and lmlab tokenizer encode did not write "
                                 "it (no sidecar mine.bin.json that matches it): choose another "
                                 "--out, or pass --force to overwrite it\n")
    assert mine.read_bytes() == b"my own binary" and not sidecar_path(mine).exists()
    stray = tmp_path / "other.bin"
    sidecar_path(stray).write_text('{"mine": true}')  # a sidecar name taken by another file
    code, _, err = cli(capsys, "tokenize", *words[2:], "--out", stray)  # the old name as well
    assert code == 1 and f"error: {sidecar_path(stray)} exists" in err
    assert cli(capsys, *words, "--out", mine, "--force")[0] == 0
    assert load_tokens(mine).tokens.tolist() == load_tokens(out).tokens.tolist()
    out.unlink()  # its own sidecar left without its .bin: encoded again
    assert cli(capsys, *words, "--out", out)[0] == 0 and out.is_file()


def test_tokenizer_export_fills_no_folder_of_other_files(trained, tmp_path, capsys):
    pytest.importorskip("tokenizers")
    assert cli(capsys, "tokenizer", "export", trained, "--out", trained)[0] == 0  # beside itself
    assert cli(capsys, "tokenizer", "export", trained, "--out", trained)[0] == 0  # and again
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    code, _, err = cli(capsys, "tokenizer", "export", trained, "--out", run)
    assert code == 1 and "holds files that lmlab tokenizer export did not write (metrics.jsonl)" \
        in err and "--force" in err
    assert [p.name for p in run.iterdir()] == ["metrics.jsonl"]
