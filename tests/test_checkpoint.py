"""Checkpoints: round trips, atomic writes, and one-line errors for bad or mismatched files (the
portable model files are tests/test_weights.py's)."""

import doctest
import io
import shutil
from pathlib import Path
from typing import BinaryIO

import pytest
import torch

from lmlab import errors
from lmlab.config import ModelConfig, load_config
from lmlab.errors import CheckpointError
from lmlab.loss import cross_entropy
from lmlab.nn import TransformerLM
from lmlab.optim import AdamW, build_optimizer
from lmlab.training.checkpoint import (
    checkpoint_config,
    load_checkpoint,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from tests.helpers.tiny_runs import tiny_run

TINY = ModelConfig(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=2)


def _trained(seed: int = 0) -> tuple[TransformerLM, AdamW]:
    torch.manual_seed(seed)
    model = TransformerLM(TINY)
    optimizer = AdamW(model.parameters(), lr=1e-2)
    model(torch.randint(0, 64, (2, 16))).sum().backward()
    optimizer.step()
    return model, optimizer


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


@pytest.mark.parametrize("to_file", [True, False], ids=["path", "file-object"])
def test_save_and_load_round_trip(tmp_path: Path, to_file: bool) -> None:
    model, optimizer = _trained(0)
    target = tmp_path / "c.pt" if to_file else io.BytesIO()
    save_checkpoint(model, optimizer, 7, target)
    if not to_file:
        target.seek(0)
    fresh_model, fresh_optimizer = _trained(1)
    assert load_checkpoint(target, fresh_model, fresh_optimizer) == 7
    _assert_same(fresh_model.state_dict(), model.state_dict())
    assert fresh_optimizer.state_dict()["state"][0]["step"] == 1
    for saved, loaded in zip(optimizer.state.values(), fresh_optimizer.state.values(),
                             strict=True):
        torch.testing.assert_close(saved["exp_avg"], loaded["exp_avg"], rtol=0, atol=0)


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    model, optimizer = _trained()
    path = tmp_path / "c.pt"
    save_checkpoint(model, optimizer, 1, path)

    def crash(obj: object, f: BinaryIO) -> None:
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, optimizer, 2, path)
    monkeypatch.undo()
    assert load_checkpoint(path, model, optimizer) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


DAMAGE = {"truncated": "{p} is truncated or not a checkpoint (not a whole file that torch.save "
                       "wrote)",
          "garbage": "{p} is not a checkpoint or weights file (not a file that torch.save or "
                     "`lmlab export` writes)",
          "empty": "{p} is empty: not a checkpoint", "missing": "checkpoint {p} does not exist",
          "objects": "{p} is not an lmlab checkpoint: it holds Python objects besides tensors, "
                     "which lmlab does not load (loading them could run code in the file)"}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_checkpoints_are_one_line_errors(tmp_path: Path, damage: str) -> None:
    """Each in lmlab's words: torch's own (its internals, or the advice to load with
    weights_only=False, which would run code from the file) is never relayed."""
    model, optimizer = _trained()
    path = tmp_path / "c.pt"
    save_checkpoint(model, optimizer, 1, path)
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "objects":
        torch.save({"model": model}, path)
    else:
        path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"x" * 500,
                          "empty": b""}[damage])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, model, optimizer)
    assert str(info.value) == DAMAGE[damage].format(p=path)


def test_a_resume_from_another_folder_trains_on_the_same_data(tmp_path: Path,
                                                              monkeypatch) -> None:
    """A relative and an absolute spelling of one file, or a relative one from another folder,
    are the same data; another file is not."""
    from lmlab.training.loop import train

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    words = tiny_run(a, "train.max_steps=10", "train.eval_interval=0")
    monkeypatch.chdir(a)
    relative = ["data.train_path=train.bin", "data.valid_path=valid.bin", "run.runs_dir=runs"]
    assert train(load_config(None, [*words, *relative])).status == "finished"
    monkeypatch.chdir(b)
    here = ["data.train_path=../a/train.bin", "data.valid_path=../a/valid.bin",
            "run.runs_dir=../a/runs", "run.resume=must"]
    result = train(load_config(None, [*words, *here, "train.max_steps=20"]))
    assert (result.status, result.step) == ("finished", 20)
    shutil.copy(a / "valid.bin", a / "other.bin")
    shutil.copy(a / "valid.bin.json", a / "other.bin.json")
    with pytest.raises(errors.ConfigError, match=r"another model or data: data.valid_path "):
        train(load_config(None, [*words, *here, "data.valid_path=../a/other.bin",
                                 "train.max_steps=30"]))


def test_a_checkpoint_of_another_shape_does_not_load(tmp_path: Path) -> None:
    model, optimizer = _trained()
    save_checkpoint(model, optimizer, 1, tmp_path / "c.pt")
    wider = TransformerLM(TINY.model_copy(update={"d_model": 64}))
    with pytest.raises(CheckpointError, match="does not fit this model: .*size mismatch"):
        load_checkpoint(tmp_path / "c.pt", wider, None)


def _training_state(config_words: list[str]) -> dict:
    model, optimizer = _trained()
    config = load_config(None, config_words)
    return {"iteration": 3, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "config": config.model_dump(mode="json"), "rng": {"torch": torch.get_rng_state(),
                                                              "cuda": None},
            "sampler": {"rng": {}}, "progress": {}}


def test_training_state_checks_the_model_config(tmp_path: Path) -> None:
    words = tiny_run(tmp_path)
    save_training_state(tmp_path / "t.pt", _training_state(words))
    assert load_training_state(tmp_path / "t.pt", load_config(None, words))["iteration"] == 3
    other = load_config(None, [*words, "model.d_model=64", "model.num_layers=3"])
    with pytest.raises(CheckpointError, match=r"different model: model.d_model=32 \(config has "
                                              r"64\); model.num_layers=2 \(config has 3\)"):
        load_training_state(tmp_path / "t.pt", other)
    save_checkpoint(*_trained(), 1, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_training_state(tmp_path / "plain.pt", other)


def test_training_state_checks_the_optimizer_and_fills_new_model_keys(tmp_path: Path) -> None:
    words = tiny_run(tmp_path)
    state = _training_state(words)
    del state["config"]["model"]["dropout"]  # written before the key existed: its default applies
    save_training_state(tmp_path / "t.pt", state)
    assert load_training_state(tmp_path / "t.pt", load_config(None, words))["iteration"] == 3
    with pytest.raises(CheckpointError, match=r"optim.optimizer='adamw' \(config has 'muon'\)"):
        load_training_state(tmp_path / "t.pt", load_config(None, [*words, "optim.optimizer=muon"]))
    with pytest.raises(CheckpointError, match="saved without optim.embedding_lr: its optimizer "
                                              "state is grouped without a group for the embedding"):
        load_training_state(tmp_path / "t.pt",
                            load_config(None, [*words, "optim.embedding_lr=0.1"]))
    state["config"]["model"]["d_model"] = -1
    save_training_state(tmp_path / "bad.pt", state)
    with pytest.raises(CheckpointError, match="invalid model config"):
        load_training_state(tmp_path / "bad.pt", load_config(None, words))


def test_a_restored_optimizer_keeps_the_new_configs_rates(tmp_path: Path) -> None:
    """A resume that changes optim.muon_lr or the weight decay trains with the new values (the
    checkpoint brings back the moments, not the group settings), as its notes say it does."""
    def built(*words: str) -> tuple[TransformerLM, torch.optim.Optimizer]:
        config = load_config(None, tiny_run(tmp_path, "optim.optimizer=muon", *words))
        torch.manual_seed(0)
        model = TransformerLM(config.model)
        return model, build_optimizer(model, config)

    model, optimizer = built("optim.muon_lr=0.02", "optim.weight_decay=0.1")
    cross_entropy(model(torch.randint(0, 64, (2, 8))), torch.randint(0, 64, (2, 8))).backward()
    optimizer.step()
    save_checkpoint(model, optimizer, 1, tmp_path / "c.pt")
    resumed_model, resumed = built("optim.muon_lr=0.05", "optim.weight_decay=0.3")
    load_checkpoint(tmp_path / "c.pt", resumed_model, resumed)
    muon = [g for g in resumed.param_groups if g["algorithm"] == "muon"]
    assert len(muon) == 1 and muon[0]["lr"] == 0.05
    assert muon[0]["lr_scale"] == pytest.approx(0.05 / 1e-2)  # tiny_run's lr_max is 1e-2
    assert {g["weight_decay"] for g in resumed.param_groups} == {0.0, 0.3}
    for saved, loaded in zip(optimizer.state.values(), resumed.state.values(), strict=True):
        for key in saved:
            torch.testing.assert_close(saved[key], loaded[key], rtol=0, atol=0)


def test_the_config_a_checkpoint_was_saved_with(tmp_path: Path) -> None:
    words = tiny_run(tmp_path)
    save_training_state(tmp_path / "t.pt", _training_state(words))
    assert checkpoint_config(tmp_path / "t.pt") == load_config(None, words)
    save_checkpoint(*_trained(), 1, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain.pt has no config: it was not saved by "):
        checkpoint_config(tmp_path / "plain.pt")


def test_errors_docstring_examples() -> None:
    result = doctest.testmod(errors)
    assert result.failed == 0 and result.attempted > 0
