"""Model files: weights with their model config and tokenizer, apart from the training state;
files of the first format (the run's whole config inside) still load and generate."""

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from lmlab.config import ModelConfig, load_config
from lmlab.errors import CheckpointError, ConfigError, TokenizerError
from lmlab.generate import Sampling
from lmlab.inference import complete, load_run, run_config
from lmlab.nn import TransformerLM
from lmlab.optim import AdamW
from lmlab.tokenizer import Tokenizer
from lmlab.training.checkpoint import save_checkpoint, save_training_state
from lmlab.weights import (
    WEIGHTS_FORMAT,
    bundled_tokenizer,
    export_weights,
    initial_weights,
    load_model,
)
from tests.helpers.lmlab_cli import cli
from tests.helpers.tiny_runs import tiny_run, write_tokens

TINY = ModelConfig(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=2)
EOT = "<|endoftext|>"


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def _model(config: ModelConfig = TINY, seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(config).eval()


def test_load_model_from_a_checkpoint_or_run_dir(tmp_path: Path) -> None:
    words = tiny_run(tmp_path)
    model = _model()
    optimizer = AdamW(model.parameters(), lr=1e-2)
    state = {"iteration": 3, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "config": load_config(None, words).model_dump(mode="json"),
             "rng": {"torch": torch.get_rng_state(), "cuda": None}, "sampler": {"rng": {}},
             "progress": {}}
    path = tmp_path / "runs" / "run" / "checkpoints" / "last.pt"
    save_training_state(path, state)
    for source in (path, tmp_path / "runs" / "run"):
        loaded, model_config = load_model(source)
        assert model_config == TINY and not loaded.training
        _assert_same(loaded.state_dict(), state["model"])
        assert run_config(source) == load_config(None, words)  # the run's own, from its checkpoint
    save_checkpoint(model, optimizer, 1, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="has no config"):
        load_model(tmp_path / "plain.pt")


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_exported_weights_load_back_with_their_config(tmp_path: Path, tied: bool) -> None:
    model = _model(TINY.model_copy(update={"tie_embeddings": tied}))
    path = tmp_path / "out" / "model.safetensors"
    export_weights(model, path)
    stored = safetensors.torch.load_file(path)  # any safetensors reader sees the tensors
    state = model.state_dict()
    assert stored.keys() == state.keys()  # a tied matrix under both names
    for name, tensor in stored.items():
        torch.testing.assert_close(tensor, state[name], rtol=0, atol=0)
    plain = TransformerLM(model.config)
    plain.load_state_dict(stored)  # strict: a plain reader finds every key
    _assert_same(plain.state_dict(), state)
    loaded, loaded_config = load_model(path)
    assert loaded_config == model.config and not loaded.training
    _assert_same(loaded.state_dict(), state)
    tokens = torch.randint(0, TINY.vocab_size, (2, 16))
    torch.testing.assert_close(loaded(tokens), model(tokens), rtol=0, atol=0)
    if tied:
        assert loaded.lm_head.weight is loaded.token_embeddings.weight


def test_a_weights_file_holds_the_model_and_tokenizer_and_no_training(tmp_path: Path) -> None:
    tokenizer = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])
    model = _model(TINY.model_copy(update={"vocab_size": 260}))
    path = tmp_path / "model.safetensors"
    export_weights(model, path, tokenizer.to_texts())
    with safetensors.safe_open(path, "pt") as weights:
        metadata = weights.metadata()
    assert metadata.keys() == {"format", "model", "tokenizer"}
    assert metadata["format"] == WEIGHTS_FORMAT == "lmlab-weights-2"
    assert ModelConfig(**json.loads(metadata["model"])) == model.config
    assert bundled_tokenizer(path) == tokenizer.to_texts()
    assert run_config(path) is None  # no data, schedule or precision to read back


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing", "foreign"])
def test_damaged_weights_files_are_one_line_errors(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "model.safetensors"
    export_weights(_model(), path)
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "foreign":  # a safetensors file from elsewhere: no lmlab config inside
        safetensors.torch.save_file({"w": torch.zeros(2)}, path)
    else:
        path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"x" * 500,
                          "empty": b""}[damage])
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    if damage == "foreign":
        assert "not written by `lmlab export`" in str(info.value)


def test_a_failed_export_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(tensors: object, filename: str, metadata: object) -> None:
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        export_weights(_model(), tmp_path / "w" / "model.safetensors")
    assert not any(path.is_file() for path in (tmp_path / "w").rglob("*"))  # no half file


def test_a_weights_file_without_its_tokenizer_asks_for_one(tmp_path: Path, capsys) -> None:
    """The library names its argument, the command line its flag."""
    path = tmp_path / "model.safetensors"
    export_weights(_model(TINY.model_copy(update={"vocab_size": 260})), path)
    with pytest.raises(TokenizerError) as info:
        load_run(path)
    assert str(info.value) == (f"{path} carries no tokenizer: give the tokenizer's directory "
                               f"(tokenizer_dir)")
    code, _, err = cli(capsys, "generate", path)
    assert code == 1 and err == f"error: {path} carries no tokenizer: pass --tokenizer DIR\n"
    Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT]).save(tmp_path / "tok")
    assert load_run(path, tmp_path / "tok")[2].vocab_size == 257
    code, out, err = cli(capsys, "generate", path, "--tokenizer", tmp_path / "tok",
                         "--max-new-tokens", 2)
    assert code == 0, err


def test_init_from_a_file_that_is_no_model_says_what_it_is(tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text("[model]\nd_model = 32\n", encoding="utf-8")
    with pytest.raises(CheckpointError) as info:
        initial_weights(config, TINY)
    assert str(info.value) == (f"{config} is a config, not a model: train it with "
                               f"`lmlab train {config}`")
    with pytest.raises(CheckpointError, match=r"no such run directory, checkpoint or weights"):
        initial_weights(tmp_path / "gone", TINY)


def test_a_hugging_face_folder_asks_to_be_imported(tmp_path: Path) -> None:
    safetensors.torch.save_file({"w": torch.zeros(2)}, tmp_path / "model.safetensors",
                                {"format": "pt"})
    (tmp_path / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'model.safetensors'} is a Hugging Face model's: "
                               f"make the folder an lmlab model with `lmlab import {tmp_path} "
                               f"--out DIR`")


def test_initial_weights_are_checked_against_the_configured_model(tmp_path: Path) -> None:
    model = _model()
    export_weights(model, tmp_path / "model.safetensors")
    weights = initial_weights(tmp_path, TINY.model_copy(update={"dropout": 0.1,
                                                                "fused_attention": True}))
    _assert_same(weights, model.state_dict())
    with pytest.raises(ConfigError, match=rf"^train.init_from={tmp_path} holds another model: "
                                          r"model.d_ff=128 \(config has 64\)$"):
        initial_weights(tmp_path, TINY.model_copy(update={"d_ff": 64}))


def test_a_file_of_the_first_format_still_loads_and_generates(tmp_path: Path, capsys) -> None:
    """A file as `lmlab export` wrote it before model files left the training config behind:
    format "lmlab-weights-1", the run's whole config under "config"."""
    tokenizer = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])
    config = load_config(None, [
        "data.train_path=/gone/train.bin", "data.valid_path=/gone/valid.bin",
        "model.vocab_size=260", "model.context_length=16", "model.d_model=32",
        "model.num_layers=1", "model.num_heads=2", "train.max_steps=7", "train.dtype=float32"])
    model = _model(config.model)
    old = tmp_path / "old.safetensors"
    safetensors.torch.save_file(
        {name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(old),
        {"format": "lmlab-weights-1", "config": json.dumps(config.model_dump(mode="json")),
         "tokenizer": json.dumps(tokenizer.to_texts())})
    loaded, model_config = load_model(old)
    assert model_config == config.model
    _assert_same(loaded.state_dict(), model.state_dict())
    new = tmp_path / "new.safetensors"
    export_weights(model, new, tokenizer.to_texts())

    args = ("--prompt", "Tom", "--max-new-tokens", 8, "--temperature", 0)
    code, out, err = cli(capsys, "generate", old, *args)
    expected = "".join(complete(model, tokenizer, "Tom", 8, Sampling(temperature=0)))
    assert code == 0 and out == f"Tom{expected}\n", err
    assert cli(capsys, "generate", new, *args)[1] == out
    text = tmp_path / "valid.txt"
    text.write_text("Once upon a time there was a tiny model. " * 4, encoding="utf-8")
    data = write_tokens(tmp_path / "valid.bin", tokenizer.encode(text.read_text()), 260)
    for flag, source in (("--text", text), ("--data", data)):
        code, out, err = cli(capsys, "eval", old, flag, source, "--device", "cpu")
        assert code == 0 and out.startswith("loss ") and err == "", err
        assert cli(capsys, "eval", new, flag, source, "--device", "cpu")[1] == out
