"""`lmlab generate` on a real (tiny) run: streaming, finding the tokenizer, and one-line errors."""


import pytest

from lmlab.config import load_config
from lmlab.errors import TokenizerError
from lmlab.generate import Sampling
from lmlab.inference import complete, find_tokenizer, load_run, run_config
from lmlab.tokenizer import Tokenizer, train_bpe
from lmlab.tokens import tokenize_file
from lmlab.training.loop import train
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
        "train.eval_batches=1", "train.device=cpu"])
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
    assert code == 1 and err == f"error: {tmp_path / 'nope'}: no such run directory or " \
                                "checkpoint file\n"


def test_a_truncated_checkpoint_is_a_one_line_error(run_dir, tmp_path, capsys):
    bad = tmp_path / "last.pt"
    bad.write_bytes((run_dir / "checkpoints" / "last.pt").read_bytes()[:2000])
    code, _, err = cli(capsys, "generate", bad)
    assert code == 1 and err.startswith(f"error: {bad} is truncated or not a checkpoint")
    assert len(err.splitlines()) == 1


def test_a_run_whose_data_moved_asks_for_a_tokenizer(run_dir, tmp_path):
    config = run_config(run_dir)
    config.data.train_path = tmp_path / "moved" / "train.bin"
    with pytest.raises(TokenizerError, match=r"cannot find the tokenizer .* pass --tokenizer DIR"):
        find_tokenizer(config)


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
