"""The answers a student could take for true when they are not: each trap of issue 20, met
through the command line as a student meets it."""

import contextlib
import doctest
import io
import random
import re
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from lmlab import text as text_module
from lmlab.config import load_config
from lmlab.experiments.planning import plan
from lmlab.experiments.sweep import Sweep, is_sweep_file
from lmlab.optim import check_schedule, learning_rate
from lmlab.training.loop import Session, train
from lmlab.training.rundir import RunDir
from tests.helpers.lmlab_cli import cli
from tests.helpers.paths import PRESETS
from tests.helpers.tiny_runs import VOCAB, pattern_tokens, tiny_run, write_tokens

SHORT = ("train.max_steps=3", "optim.warmup_iters=1")
"""A three-step tiny run (its warmup shortened to fit: three steps of warmup never reach the
peak rate, an error)."""


def test_eval_refuses_data_from_another_tokenizer(tmp_path: Path, capsys) -> None:
    """Ids of another tokenizer are valid ids: only the fingerprint shows they mean other text."""
    run = train(load_config(None, tiny_run(tmp_path, *SHORT))).run_dir
    other = write_tokens(tmp_path / "other.bin", pattern_tokens(500, VOCAB), VOCAB,
                         tokenizer_hash="another-tokenizer")
    code, out, err = cli(capsys, "eval", run, "--data", other, "--device", "cpu")
    assert code == 1 and out == ""
    assert err.startswith(f"error: {other} was made by another tokenizer than ")
    assert "train.bin" in err and "anothe" in err and len(err.strip().splitlines()) == 1

    code, out, _ = cli(capsys, "eval", run, "--data", tmp_path / "valid.bin", "--device", "cpu")
    assert code == 0 and out.startswith("loss ")


def test_eval_warns_when_the_training_data_is_gone(tmp_path: Path, capsys) -> None:
    run = train(load_config(None, tiny_run(tmp_path, *SHORT))).run_dir
    valid = tmp_path / "valid.bin"
    (tmp_path / "train.bin.json").unlink()
    code, out, err = cli(capsys, "eval", run, "--data", valid, "--device", "cpu")
    assert code == 0 and out.startswith("loss ")
    assert err.startswith("warning: the run's training data") and "cannot be checked" in err


def test_training_refuses_a_validation_file_from_another_tokenizer(tmp_path: Path,
                                                                   capsys) -> None:
    words = tiny_run(tmp_path, *SHORT)
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
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, *SHORT)
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
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, *SHORT)
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
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, *SHORT)
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
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, "train.max_steps=6")
    code, _, err = cli(capsys, "train", config, *words, "--no-progress")
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 6
    assert lines[1].startswith("step 2/6 (33%)  loss ")
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
    words = tiny_run(tmp_path, *SHORT)
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
    assert err.startswith("error: override run.name=my run: not valid: ")
    assert "letters, digits, _ . - and /" in err
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


# Schedules that never leave warmup: refused or stated before the run starts.

def test_a_run_that_never_leaves_warmup_is_refused_before_it_starts(tmp_path: Path,
                                                                    capsys) -> None:
    """The issue's command trained at lr 0, 1e-7, 2e-7 and printed `finished`."""
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, "train.max_steps=3")
    code, out, err = cli(capsys, "train", config, *words, "optim.warmup_iters=1000",
                         "optim.lr_max=1e-4", "optim.lr_min=1e-3")
    assert (code, out) == (1, "") and len(err.splitlines()) == 1
    assert err.startswith("error: optim.lr_min (0.001) is above optim.lr_max (0.0001): ")
    code, out, err = cli(capsys, "train", config, *words, "optim.warmup_iters=1000")
    assert (code, out) == (1, "") and len(err.splitlines()) == 1
    assert err.startswith("error: the run would end before its warmup does: optim.warmup_iters "
                          "(1,000) is not below its 3 steps (train.max_steps)")
    assert not (tmp_path / "runs").exists()  # nothing written


def test_a_warmup_over_half_the_run_is_one_warning(tmp_path: Path, capsys) -> None:
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, "train.max_steps=5")
    code, out, err = cli(capsys, "train", config, *words, "--no-progress")
    assert code == 0 and out.startswith("finished ")
    assert err.splitlines()[0] == (
        "warning: optim.warmup_iters (3) is more than half of the run's 5 steps "
        "(train.max_steps): most of it trains below optim.lr_max")


def test_quickstart_refuses_steps_shorter_than_the_warmup_before_any_work(tmp_path: Path,
                                                                         capsys) -> None:
    text = tmp_path / "t.txt"
    text.write_text("Once upon a time.\n<|endoftext|>\n" * 100)
    out = tmp_path / "qs"
    code, said, err = cli(capsys, "quickstart", "--steps", 20, "--train-text", text,
                          "--valid-text", text, "--out", out)
    assert (code, said) == (1, "") and len(err.splitlines()) == 1
    assert "optim.warmup_iters (50) is not below its 20 steps (train.max_steps)" in err
    assert not out.exists()


def test_a_sweep_refuses_every_point_that_cannot_train_and_warns_once(tmp_path: Path,
                                                                      capsys) -> None:
    words = [w for w in tiny_run(tmp_path) if not w.startswith("run.name=")]
    config = _empty_config(tmp_path)
    code, out, err = cli(capsys, "sweep", config, *words, "train.max_steps=5",
                         "optim.lr_min=1e-3", "--grid", "optim.lr_max=1e-2,1e-4,3e-4")
    assert (code, out) == (1, "") and len(err.splitlines()) == 1
    assert err.startswith("error: point lr_max-0.0001: optim.lr_min (0.001) is above "
                          "optim.lr_max (0.0001): ")
    assert "; point lr_max-0.0003: optim.lr_min (0.001) is above optim.lr_max (0.0003)" in err
    assert not (tmp_path / "runs").exists()
    code, out, err = cli(capsys, "sweep", config, *words, "train.max_steps=5",
                         "--grid", "optim.lr_max=1e-2,3e-3", "--dry-run")
    assert code == 0
    assert err.splitlines().count(
        "warning: all 2 points: optim.warmup_iters (3) is more than half of the run's 5 steps "
        "(train.max_steps): most of it trains below optim.lr_max") == 1


@pytest.mark.parametrize("variant", [None, "cpu"])
def test_every_preset_runs_a_schedule_that_makes_sense(variant: str | None, tmp_path: Path,
                                                       monkeypatch) -> None:
    """No point of a shipped sweep (nor a shipped config) warms up over half its run, or
    decays to a floor above its peak (as `lr_sweep`'s 1e-4 point and `batch_size`'s batch 1
    once did)."""
    monkeypatch.chdir(tmp_path)  # no run directories of ours: nothing to compare with
    for path in sorted((PRESETS / "experiments").glob("*.toml")):
        if is_sweep_file(path):
            assert plan(Sweep.from_file(path, variant), missing_ok=True).warnings == [], path
    for path in PRESETS.glob("*.toml"):
        assert check_schedule(load_config(path)) == [], path


# However a run stops, the next command it suggests works.

def _fails_at(monkeypatch, step: int, exc: BaseException) -> None:
    """Make the loop raise ``exc`` at ``step``, as a second Ctrl-C (``KeyboardInterrupt``)
    or a crash would, wherever the step is."""
    real = Session.train_step

    def train_step(self, stop_requested):
        if self.step == step:
            raise exc
        return real(self, stop_requested)

    monkeypatch.setattr(Session, "train_step", train_step)


def _run_hint(capsys, err: str, *, ends: str) -> str:
    """Run the command that ``err``'s last line suggests (after ``ends``); its stdout."""
    hint = err.strip().splitlines()[-1].split(ends, 1)[1]
    words = shlex.split(hint)
    assert words[0] == "lmlab"
    code, out, err = cli(capsys, *words[1:])
    assert code == 0, err
    return out


@pytest.mark.parametrize("saved", [True, False], ids=["checkpoint", "no-checkpoint"])
@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("boom")],
                         ids=["second-ctrl-c", "crash"])
def test_a_run_stopped_at_once_or_crashed_suggests_a_command_that_works(
        tmp_path: Path, capsys, monkeypatch, exc: BaseException, saved: bool) -> None:
    config = _empty_config(tmp_path)
    words = tiny_run(tmp_path, "train.max_steps=8", f"train.ckpt_interval={2 if saved else 0}")
    _fails_at(monkeypatch, 5, exc)
    code, out, err = cli(capsys, "train", config, *words, "--no-progress")
    monkeypatch.undo()
    interrupted = isinstance(exc, KeyboardInterrupt)
    assert (code, out) == ((130, "") if interrupted else (1, ""))
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted at once (the steps since the last checkpoint are not "
                           "saved). " if interrupted else "error: run failed: RuntimeError: boom. ")
    assert ("Traceback" in err) != interrupted  # a crash shows where it happened
    run = RunDir(tmp_path / "runs" / "run")
    assert run.status == ("interrupted" if interrupted else "failed")
    again = ["lmlab", "train", str(config), *words]
    if saved:
        assert last.endswith(f" Resume with: {shlex.join([*again, '--resume'])}")
        out = _run_hint(capsys, err, ends="Resume with: ")
    else:
        assert last.endswith(" It saved no checkpoint: start it again with: "
                             f"{shlex.join([*again, 'run.resume=auto'])}")
        out = _run_hint(capsys, err, ends="start it again with: ")
    assert out.startswith(f"finished {run.root} at step 8 ")


def test_rerunning_a_run_killed_before_its_first_checkpoint_says_what_works(
        tmp_path: Path, capsys) -> None:
    """What SIGKILL leaves before the first checkpoint: metrics, status running, no checkpoint.
    `--resume` cannot work there, so neither error suggests it."""
    config, words = _empty_config(tmp_path), tiny_run(tmp_path, "train.max_steps=6")
    assert cli(capsys, "train", config, *words, "--no-progress")[0] == 0
    run = RunDir(tmp_path / "runs" / "run")
    run.checkpoint.unlink()
    run.set_status("running")
    code, _, err = cli(capsys, "train", config, *words)
    assert code == 1 and err == (
        f"error: run directory {run.root} already exists: it has no checkpoint to resume from "
        f"(the run stopped before its first): start it afresh with run.resume=auto, or choose "
        f"another run.name\n")
    code, _, err = cli(capsys, "train", config, *words, "--resume")
    assert code == 1 and err == (
        f"error: cannot resume: {run.checkpoint} does not exist (the run stopped before its "
        f"first checkpoint: start it afresh with run.resume=auto instead)\n")
    code, out, _ = cli(capsys, "train", config, *words, "run.resume=auto", "--no-progress")
    assert code == 0 and out.startswith("finished ")


def _ask_to_stop(monkeypatch) -> None:
    """The first Ctrl-C (or SIGTERM), as the loop sees it: stop after this step."""
    monkeypatch.setattr("lmlab.training.loop.stop_on_signals",
                        lambda: contextlib.nullcontext(lambda: True))


def _text(path: Path) -> Path:
    rng = random.Random(0)
    words = "once upon a time there was a little cat who liked the big red ball".split()
    path.write_text("".join(" ".join(rng.choices(words, k=30)) + ".\n<|endoftext|>\n"
                            for _ in range(300)))
    return path


QUICK = ["model.vocab_size=300", "model.context_length=16", "model.d_model=32",
         "model.num_layers=1", "model.num_heads=2", "optim.warmup_iters=1",
         "train.eval_batches=1", "train.compile=false", "--steps", "4", "--no-progress"]


def test_an_interrupted_quickstart_suggests_a_command_that_works(tmp_path: Path, capsys,
                                                                 monkeypatch) -> None:
    text, out = _text(tmp_path / "t.txt"), tmp_path / "qs"
    args = ["quickstart", *QUICK, "--train-text", text, "--valid-text", text, "--out", out]
    _ask_to_stop(monkeypatch)
    code, said, err = cli(capsys, *args)
    monkeypatch.undo()
    assert code == 130 and err.startswith("interrupted at step 1; checkpoint saved. Resume with: ")
    assert _run_hint(capsys, err, ends="Resume with: ").startswith(
        f"finished {out / 'tinystories-cpu'} at step 4 ")

    # stopped while the data is made: the quickstart itself, into an empty folder, again
    shutil.rmtree(out)
    monkeypatch.setattr("lmlab.quickstart.tokenize_file", _raises(KeyboardInterrupt()))
    code, said, err = cli(capsys, *args)
    monkeypatch.undo()
    assert code == 130 and err.strip().splitlines()[-1] == (
        f"interrupted while preparing the data in {out}: remove that folder, then run the same "
        f"lmlab quickstart command again")
    shutil.rmtree(out)
    code, said, _ = cli(capsys, *args)
    assert code == 0 and "==> evaluated " in said


def _raises(exc: BaseException):
    def raising(*args, **kwargs):
        raise exc
    return raising


def test_an_interrupted_sweep_continues_with_the_same_command(tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    words = [w for w in tiny_run(tmp_path, *SHORT) if not w.startswith("run.name=")]
    args = ["sweep", _empty_config(tmp_path), *words, "--grid", "optim.lr_max=1e-2,3e-3"]
    _ask_to_stop(monkeypatch)
    code, _, err = cli(capsys, *args)
    monkeypatch.undo()
    assert code == 130 and err.strip().splitlines()[-1].startswith(
        "interrupted: run the same command again to continue the sweep")
    code, out, _ = cli(capsys, *args)
    assert code == 0
    assert [RunDir(tmp_path / "runs" / "empty" / name).status
            for name in ("lr_max-0.01", "lr_max-0.003")] == ["finished", "finished"]


def test_a_sweep_subprocess_that_crashes_says_to_run_the_sweep_again(tmp_path: Path, capsys,
                                                                      monkeypatch) -> None:
    from lmlab.training import __main__ as entry

    config = load_config(None, tiny_run(tmp_path, *SHORT, "run.resume=auto"))
    monkeypatch.setattr("sys.stdin", io.StringIO(config.model_dump_json()))
    _fails_at(monkeypatch, 2, RuntimeError("boom"))
    assert entry.main() == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: run failed: RuntimeError: boom. It saved no checkpoint: start it again with: "
        "the same lmlab sweep command (finished points are skipped)")


def test_a_count_of_one_is_singular(tmp_path: Path, capsys) -> None:
    """`plural` writes every count: no "1 merges", "1 runs" or "1 steps"."""
    assert doctest.testmod(text_module).failed == 0
    text = tmp_path / "t.txt"
    text.write_text("ab ab ab ab\n")
    code, out, _ = cli(capsys, "tokenizer", "train", "--input", text, "--vocab-size", 257,
                       "--out", tmp_path / "tok")
    assert code == 0 and out.startswith("wrote 257 tokens (1 merge) to ")
    words = [w for w in tiny_run(tmp_path, "train.max_steps=1", "optim.warmup_iters=0")
             if not w.startswith("run.name=")]
    code, out, err = cli(capsys, "sweep", _empty_config(tmp_path), *words,
                         "--grid", "optim.lr_max=1e-2", "--dry-run")
    assert code == 0, err
    assert out.startswith(f"sweep {tmp_path / 'runs' / 'empty'}: 1 run (1 point x 1 seed)")
    assert "  lr_max-0.01: 1 step, " in out


def test_a_missing_token_file_says_how_to_make_one(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no such" / "train.bin"
    code, out, err = cli(capsys, "train", _empty_config(tmp_path), *tiny_run(tmp_path),
                         f"data.train_path={missing}")
    assert (code, out) == (1, "") and err == (
        f"error: {missing}: no such token file (make it from a text file with `lmlab tokenizer "
        f"encode --tokenizer DIR --input TEXT --out '{missing}'`)\n")
