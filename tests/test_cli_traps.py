"""The answers a student could take for true when they are not: each trap of issue 20, met
through the command line as a student meets it."""

import re
from pathlib import Path

import pytest
import torch

from lmlab.config import load_config
from lmlab.optim import learning_rate
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from tests.helpers.lmlab_cli import cli
from tests.helpers.tiny_runs import VOCAB, pattern_tokens, tiny_run, write_tokens


def test_eval_refuses_data_from_another_tokenizer(tmp_path: Path, capsys) -> None:
    """Ids of another tokenizer are valid ids: only the fingerprint shows they mean other text."""
    run = train(load_config(None, tiny_run(tmp_path, "train.max_steps=3"))).run_dir
    other = write_tokens(tmp_path / "other.bin", pattern_tokens(500, VOCAB), VOCAB,
                         tokenizer_hash="another-tokenizer")
    code, out, err = cli(capsys, "eval", run, "--data", other, "--device", "cpu")
    assert code == 1 and out == ""
    assert err.startswith(f"error: {other} was made by another tokenizer than ")
    assert "train.bin" in err and "anothe" in err and len(err.strip().splitlines()) == 1

    code, out, _ = cli(capsys, "eval", run, "--data", tmp_path / "valid.bin", "--device", "cpu")
    assert code == 0 and out.startswith("loss ")


def test_eval_warns_when_the_training_data_is_gone(tmp_path: Path, capsys) -> None:
    run = train(load_config(None, tiny_run(tmp_path, "train.max_steps=3"))).run_dir
    valid = tmp_path / "valid.bin"
    (tmp_path / "train.bin.json").unlink()
    code, out, err = cli(capsys, "eval", run, "--data", valid, "--device", "cpu")
    assert code == 0 and out.startswith("loss ")
    assert err.startswith("warning: the run's training data") and "cannot be checked" in err


def test_training_refuses_a_validation_file_from_another_tokenizer(tmp_path: Path,
                                                                   capsys) -> None:
    words = tiny_run(tmp_path, "train.max_steps=3")
    other = write_tokens(tmp_path / "other.bin", pattern_tokens(500, VOCAB), VOCAB,
                         tokenizer_hash="another-tokenizer")
    config = tmp_path / "empty.toml"
    config.write_text("")
    code, _, err = cli(capsys, "train", config, *words, f"data.valid_path={other}")
    assert code == 1 and "was made by another tokenizer than" in err
    assert not (tmp_path / "runs" / "run").exists()


def test_a_time_budget_schedule_cut_short_by_steps_still_anneals(tmp_path: Path,
                                                                 capsys) -> None:
    """`lmlab train tinystories-cpu train.max_steps=2000` (the README's example):
    the cosine must end at the step limit, not at the 600 s budget the run never reaches."""
    config = tmp_path / "empty.toml"
    config.write_text("")
    words = tiny_run(tmp_path, "train.max_steps=12", "train.time_budget_s=600",
                     "train.schedule_over_time=true", "optim.lr_min=1e-4")
    code, _, _ = cli(capsys, "train", config, *words, "--no-progress")
    assert code == 0
    logged = {r["step"]: r["train/lr"] for r in RunDir(tmp_path / "runs" / "run").read_metrics()
              if "train/lr" in r}
    by_steps = load_config(None, [*words, "train.time_budget_s=none",
                                  "train.schedule_over_time=false"])
    last = max(logged)
    assert logged[last] == pytest.approx(learning_rate(by_steps, last - 1, 0.0), rel=1e-3)
    assert logged[last] < 5e-4  # near lr_min 1e-4 at the end, far below lr_max 1e-2


def _empty_config(tmp_path: Path) -> Path:
    config = tmp_path / "empty.toml"
    config.write_text("")
    return config


def test_resume_states_a_new_length_and_other_changes(tmp_path: Path, capsys) -> None:
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, "train.max_steps=5")
    assert cli(capsys, "train", config, *words, "--no-progress")[0] == 0
    code, out, err = cli(capsys, "train", config, *words, "train.max_steps=8", "optim.lr_max=2e-2",
                         "--resume", "--no-progress")
    assert code == 0 and "at step 8 " in out
    assert "resuming with train.max_steps 5 -> 8: the run now ends at step 8" in err
    assert "resuming with other settings: optim.lr_max 0.01 -> 0.02" in err


def test_resume_refuses_other_data(tmp_path: Path, capsys) -> None:
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, "train.max_steps=3")
    assert cli(capsys, "train", config, *words, "--no-progress")[0] == 0
    other = write_tokens(tmp_path / "other.bin", pattern_tokens(500, VOCAB, seed=7), VOCAB)
    code, _, err = cli(capsys, "train", config, *words, f"data.valid_path={other}", "--resume")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: cannot resume ") and f"data.valid_path {tmp_path}" in err
    assert f"-> {other}" in err


def test_resume_refuses_another_sampling(tmp_path: Path, capsys) -> None:
    """Shuffled passes and random windows are other data orders: the checkpoint's config says
    which, and a checkpoint from before the key existed (random windows) is refused by its
    sampler state."""
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, "train.max_steps=3")
    assert cli(capsys, "train", config, *words, "--no-progress")[0] == 0
    more = [*words, "train.max_steps=6", "data.sampling=epochs", "--resume", "--no-progress"]
    code, _, err = cli(capsys, "train", config, *more)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "cannot resume " in err and "data.sampling random -> epochs" in err

    checkpoint = tmp_path / "runs" / "run" / "checkpoints" / "last.pt"
    state = torch.load(checkpoint, weights_only=True)
    del state["config"]["data"]["sampling"]  # as saved before data.sampling existed
    torch.save(state, checkpoint)
    code, _, err = cli(capsys, "train", config, *more)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {checkpoint}: ") and "data.sampling = 'epochs'" in err


def test_resuming_a_finished_run_prints_its_final_metrics(tmp_path: Path, capsys) -> None:
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, "train.max_steps=3")
    code, first, _ = cli(capsys, "train", config, *words, "--no-progress")
    assert code == 0
    val_loss = first.split("val/loss ")[1].split(",")[0]
    code, out, err = cli(capsys, "train", config, *words, "--resume", "--no-progress")
    assert code == 0 and err == ""
    assert out.startswith("had already finished ") and f"val/loss {val_loss}," in out


def test_auto_resume_without_a_checkpoint_keeps_the_old_log(tmp_path: Path, capsys) -> None:
    """A run killed before its first checkpoint: `auto` starts afresh, and says where the metrics
    it had logged went."""
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, "train.max_steps=6")
    assert cli(capsys, "train", config, *words, "--no-progress")[0] == 0
    run = RunDir(tmp_path / "runs" / "run")
    logged = run.metrics.read_text()
    run.checkpoint.unlink()
    run.set_status("running")  # as a SIGKILL leaves it
    code, _, err = cli(capsys, "train", config, *words, "run.resume=auto", "--no-progress")
    assert code == 0 and "has no checkpoint to resume from, so the run starts afresh" in err
    kept = list(run.root.glob("metrics-before-*.jsonl"))
    assert len(kept) == 1 and kept[0].read_text() == logged and str(kept[0]) in err
    assert run.read_metrics()[0]["step"] == 1  # the new log starts again


def test_progress_lines_when_no_bar_is_drawn(tmp_path: Path, capsys, monkeypatch) -> None:
    """A log file or --no-progress still shows that a run is alive, and how far it is."""
    monkeypatch.setattr("lmlab.training.display.PROGRESS_LINE_S", 0.0)
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, "train.max_steps=4")
    code, _, err = cli(capsys, "train", config, *words, "--no-progress")
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 4
    assert lines[1].startswith("step 2/4 (50%)  loss ")
    assert "  lr 6.67e-03  " in lines[2]  # still warming up: 2/3 of 1e-2
    assert re.search(r" tok/s  ETA \d+m\d\ds$", lines[0]) and "\r" not in err


def test_a_step_past_the_time_budget_shows_100_percent_and_no_negative_eta(
        tmp_path: Path, capsys, monkeypatch) -> None:
    """A step is not cut short, so a time budget's last step ends past it: the line must not
    say 184% and ETA -1m43s (as a 134M model's 20 s CPU steps once did)."""
    monkeypatch.setattr("lmlab.training.display.PROGRESS_LINE_S", 0.0)
    config = _empty_config(tmp_path)
    words = tiny_run(tmp_path, "train.max_steps=none", "train.time_budget_s=0.000001")
    code, _, err = cli(capsys, "train", config, *words, "--no-progress")
    lines = err.strip().splitlines()
    assert code == 0 and lines[0].startswith("step 1 (100%)  loss ")
    assert "ETA" not in lines[0]


def test_a_sweep_reads_at_80_columns_and_shows_progress(tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    """In a log file (no terminal: rich draws 80 columns) every run name shows in full, and a
    sequential sweep tells how each run is going before the end."""
    monkeypatch.setattr("lmlab.training.display.PROGRESS_LINE_S", 0.0)
    words = tiny_run(tmp_path, "train.max_steps=3")
    words = [w for w in words if not w.startswith("run.name=")]
    code, out, err = cli(capsys, "sweep", _empty_config(tmp_path), *words,
                         "--grid", "optim.lr_max=1e-2,3e-3", "--grid", "train.batch_size=4",
                         "--grid", "model.norm_position=pre",
                         "--grid", "optim.weight_decay=0.05")
    assert code == 0 and "…" not in out
    name = "lr_max-0.01__batch_size-4__norm_position-pre__weight_decay-0.05"
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("run "))
    width = lines[header].index("status")
    run_column = "".join(line[:width].strip() for line in lines[header + 2:])
    assert run_column == name + name.replace("0.01", "0.003")  # wrapped, never cut
    assert max(len(line) for line in out.splitlines()) <= 80
    assert f"{name}: step 2/3 (67%)  loss " in err
    assert "bits/byte" in out and re.search(r" \d\.\d{3} ", out)  # numbers whole


def test_a_bad_run_name_is_explained_not_shown_as_a_regex(tmp_path: Path, capsys) -> None:
    code, _, err = cli(capsys, "train", _empty_config(tmp_path), *tiny_run(tmp_path),
                       "run.name=my run")
    assert code == 1
    assert "run.name 'my run' is not valid: " in err and "letters, digits, _ . - and /" in err
    assert "pattern" not in err and "^[" not in err


def test_none_is_a_run_name_not_an_unset_key(tmp_path: Path, capsys) -> None:
    words = [*tiny_run(tmp_path, "train.max_steps=2"), "run.name=none"]
    assert load_config(None, words).run.name == "none"
    assert load_config(None, [*words, "train.max_steps=none",
                              "train.time_budget_s=5"]).train.max_steps is None


def test_version(capsys) -> None:
    from importlib.metadata import version

    assert cli(capsys, "--version") == (0, f"lmlab {version('lmlab')}\n", "")


def test_ids_beyond_the_vocabulary_name_the_fix(tmp_path: Path, capsys) -> None:
    """Data of a larger vocabulary (the 2,048-token set-up under a 1,024-token variant): the
    error says what to do."""
    words = tiny_run(tmp_path, "model.vocab_size=32")
    code, _, err = cli(capsys, "train", _empty_config(tmp_path), *words)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "vocabulary of 32 (model.vocab_size): a 64-token tokenizer made it" in err
    assert "tokenize the text with a 32-token tokenizer" in err
    assert "or set model.vocab_size=64" in err
