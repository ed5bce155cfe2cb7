"""`lmlab generate` on a real (tiny) run: streaming, finding the tokenizer from any folder, and
one-line errors that say why there is nothing to load."""

import os
import shutil
from pathlib import Path

import pytest
import torch

from lmlab.config import load_config
from lmlab.errors import TokenizerError
from lmlab.generate import Sampling
from lmlab.inference import complete, find_tokenizer, load_run, run_config
from lmlab.tokenizer import Tokenizer, train_bpe
from lmlab.tokens import tokenize_file
from lmlab.training.lock import run_lock
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from tests.helpers.fake_runs import fake_run
from tests.helpers.lmlab_cli import cli
from tests.helpers.tokenizer_refs import FIXTURES, need

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run trained for a few steps on tokens of the TinyStories fixture, with its tokenizer in
    the conventional place: ``tokenizer/`` next to the training ``.bin``."""
    root = tmp_path_factory.mktemp("gen")
    text = need(FIXTURES / "tinystories_sample.txt")
    vocab, merges = train_bpe(text, 300, [EOT])
    tokenizer = Tokenizer(vocab, merges, [EOT])
    tokenizer.save(root / "data" / "tokenizer")
    tokenize_file(tokenizer, text, root / "data" / "train.bin", num_workers=1, progress=False)
    config = load_config(None, [
        f"data.train_path={root / 'data' / 'train.bin'}",
        f"data.valid_path={root / 'data' / 'train.bin'}", f"run.runs_dir={root / 'runs'}",
        "run.name=tiny", "model.vocab_size=300", "model.context_length=32", "model.d_model=32",
        "model.num_layers=1", "model.num_heads=2", "train.batch_size=4", "train.max_steps=3",
        "train.eval_batches=1", "train.device=cpu", "optim.warmup_iters=1"])
    return train(config).run_dir


def test_generate_streams_the_prompt_and_its_continuation(run_dir, capsys):
    args = ("generate", run_dir, "--prompt", "Once upon a time", "--max-new-tokens", 20,
            "--seed", 0)
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert out.startswith("Once upon a time") and out.endswith("\n")
    assert len(out) > len("Once upon a time\n")
    assert cli(capsys, *args)[1] == out  # the seed fixes the text


def test_generate_equals_the_library_completion(run_dir, capsys):
    model, _, tokenizer = load_run(run_dir)
    text = "".join(complete(model, tokenizer, "Tom", 15, Sampling(temperature=0)))
    code, out, _ = cli(capsys, "generate", run_dir / "checkpoints" / "last.pt",
                         "--prompt", "Tom", "--max-new-tokens", 15, "--temperature", 0)
    assert code == 0 and out == f"Tom{text}\n"


def test_an_exported_safetensors_file_generates_the_same_text(run_dir, capsys):
    code, out, err = cli(capsys, "export", run_dir)
    weights = run_dir / "model.safetensors"
    assert code == 0 and out.startswith(f"wrote {weights} (") and weights.is_file(), err
    args = ("--prompt", "Tom", "--max-new-tokens", 15, "--temperature", 0)
    from_run = cli(capsys, "generate", run_dir, *args)[1]
    assert cli(capsys, "generate", weights, *args)[1] == from_run


def test_an_export_copied_elsewhere_carries_its_tokenizer(run_dir, tmp_path, capsys):
    """One file is the whole model: weights, config and tokenizer; readable like any other
    run file (0644 under the usual umask 022)."""
    out = tmp_path / "elsewhere" / "model.safetensors"
    code, said, err = cli(capsys, "export", run_dir, "--out", out)
    assert code == 0 and "with its 300-token tokenizer" in said, err
    assert out.stat().st_mode & 0o777 == (run_dir / "config.json").stat().st_mode & 0o777
    copied = tmp_path / "far" / "away.safetensors"
    copied.parent.mkdir()
    copied.write_bytes(out.read_bytes())
    (run_dir / "model.safetensors").unlink(missing_ok=True)
    data = run_dir.parent.parent / "data"
    data.rename(data.with_name("moved"))  # neither the data nor its tokenizer are findable
    try:
        args = ("--prompt", "Tom", "--max-new-tokens", 15, "--temperature", 0)
        code, text, err = cli(capsys, "generate", copied, *args)
    finally:
        data.with_name("moved").rename(data)
    assert code == 0, err
    assert text == cli(capsys, "generate", run_dir, *args)[1]


def test_export_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    code, out, err = cli(capsys, "export", tmp_path / "nothing")
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_an_empty_prompt_starts_a_new_document(run_dir, capsys):
    model, _, tokenizer = load_run(run_dir)
    after_eot = "".join(complete(model, tokenizer, EOT, 8, Sampling(temperature=0)))
    code, out, err = cli(capsys, "generate", run_dir, "--max-new-tokens", 8,
                           "--temperature", 0)
    assert code == 0, err
    assert out == f"{after_eot}\n"


def test_the_tokenizer_is_found_next_to_the_data_and_checked(run_dir, tmp_path):
    _, _, tokenizer = load_run(run_dir)
    config = run_config(run_dir)
    assert tokenizer.fingerprint() == Tokenizer.load(run_dir.parent.parent / "data" /
                                                     "tokenizer").fingerprint()
    other = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])
    other.save(tmp_path / "other")
    with pytest.raises(TokenizerError, match="is not the one that made the run's data"):
        find_tokenizer(config, tmp_path / "other")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "-1"], "error: --temperature must be >= 0"),
        (["--top-p", "0"], r"error: --top-p must be in (0, 1]"),
        (["--top-p", "1.5"], r"error: --top-p must be in (0, 1]"),
        (["--top-k", "0"], "error: --top-k must be >= 1"),
        (["--prompt", "a" * 40], "error: the prompt is 40 tokens, longer than the model's "
                                 "context of 32"),
        (["--tokenizer", "/nonexistent/tok"], "error: /nonexistent/tok: no such tokenizer"),
    ],
)
def test_bad_arguments_are_one_line_errors(run_dir, capsys, args, message):
    code, out, err = cli(capsys, "generate", run_dir, *args)
    assert code == 1 and out == ""
    assert err.startswith(message) and len(err.splitlines()) == 1


def test_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    code, _, err = cli(capsys, "generate", tmp_path / "nope")
    assert code == 1 and err == f"error: {tmp_path / 'nope'}: no such run directory, " \
                                "checkpoint or weights file\n"
    fake_run(tmp_path, "lr_max-0.001", "finished", [3.0])
    code, _, err = cli(capsys, "generate", tmp_path / "nope")  # a misspelt run: name the others
    assert err == f"error: {tmp_path / 'nope'}: no such run directory, checkpoint or weights " \
                  f"file ({tmp_path} holds 1 run (lr_max-0.001))\n"


def test_a_truncated_checkpoint_is_a_one_line_error(run_dir, tmp_path, capsys):
    bad = tmp_path / "last.pt"
    bad.write_bytes((run_dir / "checkpoints" / "last.pt").read_bytes()[:2000])
    code, _, err = cli(capsys, "generate", bad)
    assert code == 1 and err == (f"error: {bad} is truncated or not a checkpoint (not a whole "
                                 f"file that torch.save wrote)\n")


def _ended(root: Path, status: str, reason: str | None = None) -> Path:
    """A run directory that ended with ``status`` before its first checkpoint."""
    run = RunDir(fake_run(root, "x", status, [3.0, float("nan")]))
    run.set_status(status, reason)
    return run.root


def _folder_of_runs(root: Path) -> Path:
    for lr in ("0.001", "0.003", "0.01", "0.03"):
        fake_run(root / "lr", f"lr_max-{lr}", "finished", [3.0])
    return root / "lr"


def _file(name: str, text: str):
    def make(root: Path) -> Path:
        (root / name).write_text(text, encoding="utf-8")
        return root / name
    return make


NOTHING_TO_LOAD = {
    "diverged": (lambda root: _ended(root, "diverged", "train/loss is nan at step 7"),
                 "{p} diverged (train/loss is nan at step 7) before its first checkpoint: it "
                 "kept no model to load"),
    "failed": (lambda root: _ended(root, "failed"),
               "{p} failed before its first checkpoint: it kept no model to load"),
    "interrupted": (lambda root: _ended(root, "interrupted"),
                    "{p} was interrupted before its first checkpoint: it kept no model to load"),
    "killed": (lambda root: _ended(root, "running"),
               "{p} was stopped (killed) before its first checkpoint: it kept no model to load"),
    "folder of runs": (_folder_of_runs, "{p} is a folder of 4 runs (lr_max-0.001, lr_max-0.003, "
                                        "lr_max-0.01, lr_max-0.03): give one of them"),
    "not a run": (lambda root: root, "{p} is not a run directory: it holds no "
                                     "checkpoints/last.pt, model.safetensors or config.json"),
    "config": (_file("c.toml", "[model]\nd_model = 32\n"),
               "{p} is a config, not a model: train it with `lmlab train {p}`"),
    "json": (_file("c.json", "{}"), "{p} is a JSON file, not a model"),
    "text": (_file("story.txt", "Once upon a time"), "{p} is a text file, not a model"),
    "no suffix": (_file("notes", "[model]"), "{p} is not a checkpoint or weights file (not a "
                                             "file that torch.save or `lmlab export` writes)"),
    "run's file": (lambda root: _ended(root, "finished") / "config.json",
                   "{p} is a file of the run directory {p.parent}, not a model: give the folder "
                   "itself"),
}


@pytest.mark.parametrize("command", ["generate", "eval", "export"])
@pytest.mark.parametrize("case", NOTHING_TO_LOAD)
def test_nothing_to_load_says_why_in_one_line(tmp_path, capsys, command, case):
    """Every command that loads a model says why there is none, never torch's advice."""
    make, message = NOTHING_TO_LOAD[case]
    path = make(tmp_path)
    extra = ["--text", path] if command == "eval" else []
    before = sorted(tmp_path.rglob("*"))
    code, out, err = cli(capsys, command, path, *extra)
    assert (code, out) == (1, "")
    assert err == f"error: {message.format(p=path)}\n"
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_a_run_still_training_says_so(tmp_path, capsys):
    path = _ended(tmp_path, "running")
    with run_lock(path):
        code, _, err = cli(capsys, "generate", path)
    assert code == 1 and err.startswith(f"error: {path} is still training (pid {os.getpid()} ")
    assert err.endswith("has saved no checkpoint yet: its model can be loaded after the first "
                        "(train.ckpt_interval)\n")


def test_a_token_file_and_a_pickle_are_not_models(run_dir, tmp_path, capsys):
    data = run_dir.parent.parent / "data" / "train.bin"
    for path, message in [
            (data, f"{data} is a token file (`lmlab tokenizer encode` wrote it), not a model"),
            (data.with_name("train.bin.json"), f"{data}.json is the sidecar of a token file, "
                                               f"not a model")]:
        assert cli(capsys, "generate", path)[2] == f"error: {message}\n"
    pickled = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole module: unpickling it runs its code
    code, _, err = cli(capsys, "generate", pickled)
    assert code == 1 and err == (f"error: {pickled} is not an lmlab checkpoint: it holds Python "
                                 f"objects besides tensors, which lmlab does not load (loading "
                                 f"them could run code in the file)\n")


def test_a_run_whose_data_moved_asks_for_a_tokenizer(run_dir, tmp_path):
    config = run_config(run_dir)
    moved = tmp_path / "moved" / "train.bin"
    config.data.train_path = moved
    with pytest.raises(TokenizerError) as info:
        find_tokenizer(config)
    assert str(info.value) == (f"cannot find the tokenizer that made {moved} (the file is gone, "
                               f"and no tokenizer is in {moved.parent / 'tokenizer'} or "
                               f"{moved.parent}): give the tokenizer's directory (tokenizer_dir)")


def test_the_tokenizer_recorded_in_the_sidecar_is_found_anywhere(run_dir, tmp_path):
    """`lmlab tokenizer encode` records the tokenizer's folder in the sidecar: a tokenizer kept
    apart from the data is found there."""
    data = run_dir.parent.parent / "data"
    shutil.copytree(data / "tokenizer", tmp_path / "tokenizers" / "ts")
    tokenize_file(Tokenizer.load(tmp_path / "tokenizers" / "ts"), need(FIXTURES /
                  "tinystories_sample.txt"), tmp_path / "tokens" / "train.bin", num_workers=1,
                  progress=False, tokenizer_dir=tmp_path / "tokenizers" / "ts")
    config = run_config(run_dir)
    config.data.train_path = tmp_path / "tokens" / "train.bin"
    found = find_tokenizer(config)
    assert found.fingerprint() == Tokenizer.load(data / "tokenizer").fingerprint()


@pytest.fixture(scope="module")
def trained_in_a(run_dir, tmp_path_factory):
    """Folder A, where a run was trained with the data paths relative to A, as a user types
    them: ``data/train.bin``, ``runs/tiny``."""
    a = tmp_path_factory.mktemp("A")
    shutil.copytree(run_dir.parent.parent / "data", a / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(a)
        train(load_config(None, [
            "data.train_path=data/train.bin", "data.valid_path=data/train.bin", "run.name=tiny",
            "model.vocab_size=300", "model.context_length=32", "model.d_model=32",
            "model.num_layers=1", "model.num_heads=2", "train.batch_size=4",
            "train.max_steps=3", "train.eval_batches=1", "train.device=cpu",
            "optim.warmup_iters=1"]))
    return a


def test_a_run_works_from_any_folder(trained_in_a, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # folder B
    run = Path(os.path.relpath(trained_in_a / "runs" / "tiny"))
    args = ("--prompt", "Tom", "--max-new-tokens", 8, "--temperature", 0)
    code, text, err = cli(capsys, "generate", run, *args)
    assert code == 0 and text.startswith("Tom"), err
    (tmp_path / "t.txt").write_text("Once upon a time there was a cat. " * 8, encoding="utf-8")
    code, out, err = cli(capsys, "eval", run, "--text", "t.txt", "--device", "cpu")
    assert code == 0 and out.startswith("loss ") and err == "", err
    data = Path(os.path.relpath(trained_in_a / "data" / "train.bin"))
    code, out, err = cli(capsys, "eval", run, "--data", data, "--device", "cpu")
    assert code == 0 and err == "", err  # the run's own data found, so checked against it
    code, out, err = cli(capsys, "export", run, "--out", "m.safetensors")
    assert code == 0 and (tmp_path / "m.safetensors").is_file(), err
    assert cli(capsys, "generate", "m.safetensors", *args)[1] == text


def test_a_run_whose_data_moved_names_the_path_it_tried(trained_in_a, tmp_path, monkeypatch,
                                                         capsys):
    monkeypatch.chdir(tmp_path)
    run, data = trained_in_a / "runs" / "tiny", Path(os.path.realpath(trained_in_a / "data"))
    data.rename(tmp_path / "elsewhere")
    try:
        code, _, err = cli(capsys, "generate", run)
        with pytest.raises(TokenizerError) as info:
            load_run(run)
        code_eval, _, warned = cli(capsys, "eval", run, "--data",
                                   tmp_path / "elsewhere" / "train.bin", "--device", "cpu")
        found = load_run(run, tmp_path / "elsewhere" / "tokenizer")[2]
    finally:
        (tmp_path / "elsewhere").rename(data)
    tried = f"{data / 'train.bin'} (the file is gone, and no tokenizer is in {data / 'tokenizer'}"
    assert code == 1 and err == (f"error: cannot find the tokenizer that made {tried} or {data})"
                                 f": pass --tokenizer DIR\n")
    assert tried in str(info.value) and "--" not in str(info.value)  # the library names no flag
    assert code_eval == 0 and warned.startswith(f"warning: the run's training data "
                                                f"{data / 'train.bin'} is gone")
    assert found.vocab_size == 300


def test_the_generation_study_scores_every_setting(run_dir, capsys):
    from lmlab.inference import STUDY_TEMPERATURES, STUDY_TOP_PS, generation_study

    model, _, tokenizer = load_run(run_dir)
    samples = generation_study(model, tokenizer, "Tom", max_new_tokens=12, seed=0)
    assert [(s.sampling.temperature, s.sampling.top_p) for s in samples] == [
        (t, p) for t in STUDY_TEMPERATURES for p in STUDY_TOP_PS]
    for sample in samples:
        logprobs: list[float] = []
        text = "".join(complete(model, tokenizer, "Tom", 12, sample.sampling, 0, logprobs))
        assert (sample.text, sample.num_tokens) == (text, len(logprobs))
        assert sample.mean_logprob == pytest.approx(sum(logprobs) / len(logprobs))
        assert sample.mean_logprob < 0
    code, out, err = cli(capsys, "generate", run_dir, "--prompt", "Tom", "--max-new-tokens", 12,
                         "--study")
    assert code == 0, err
    first = samples[0]
    assert out.startswith(f"### temperature 0.7, top-p 0.9: {first.num_tokens} tokens, mean "
                          f"log-prob {first.mean_logprob:.3f} nats/token\n\n```text\nTom"
                          f"{first.text}\n```\n")
    assert out.count("### temperature") == 6
