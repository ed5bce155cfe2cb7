"""`lmlab report`: every run in a table, figures written and linked, the sweep's base and
changes, a sample from the best run (saved or generated), and bad input."""

import re
from pathlib import Path

import pytest

from lmlab.experiments.planning import plan
from lmlab.experiments.report import write_report
from lmlab.experiments.runner import run_sweep
from lmlab.experiments.sweep import Sweep
from lmlab.tokenizer import Tokenizer, train_bpe
from lmlab.tokens import tokenize_file
from lmlab.training.rundir import RunDir
from tests.helpers.fake_runs import fake_run
from tests.helpers.lmlab_cli import cli
from tests.helpers.paths import PRESETS, SHARED_DATA


def test_every_run_is_in_the_report_and_every_figure_exists(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    fake_run(runs / "lr", "a", "finished", [5.0, 4.0, 3.0, 2.0], lr_max=1e-3)
    fake_run(runs / "lr", "b", "diverged", [5.0, 9.0], lr_max=1e-1)
    RunDir(runs / "lr" / "b").set_status("diverged", "train/loss 9.000 at step 2 is over 2x the "
                                         "first step's 5.000 (train.diverge_factor)")
    fake_run(runs, "single", "finished", [5.0, 4.5])
    (runs / "lr" / "a" / "samples.txt").write_text("Once upon a time there was a test.")
    out = tmp_path / "docs" / "EXPERIMENTS.md"
    code, stdout, _ = cli(capsys, "report", str(runs), "--out", str(out))
    assert code == 0 and f"wrote {out}" in stdout
    text = out.read_text()
    for run in ("`a`", "`b`", "`single`"):
        assert f"| {run} |" in text
    assert "## lr" in text and "## runs" in text
    assert "| `b` | 0.1 | diverged |" in text
    assert "- `b` diverged: train/loss 9.000 at step 2 is over 2x the first step's 5.000" in text
    figures = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert sorted(figures) == ["lr.png", "lr_lr.png", "runs.png"]  # lr: the edge of stability
    assert all((out.parent / figure).stat().st_size > 1000 for figure in figures)
    assert "Once upon a time there was a test." in text  # the best run's samples.txt


@pytest.mark.slow
def test_a_sweep_report_names_its_base_and_generates_a_sample(tmp_path: Path) -> None:
    """A real sweep on a real tokenizer: the report names the base config and its changes, and
    samples the best run's checkpoint."""
    text = SHARED_DATA / "fixtures" / "tinystories_sample.txt"
    if not text.is_file():
        pytest.skip(f"{text} not found")
    data = tmp_path / "data"
    vocab, merges = train_bpe(text, 300, ["<|endoftext|>"])
    tokenizer = Tokenizer(vocab, merges, ["<|endoftext|>"])
    tokenizer.save(data / "tokenizer")
    tokenize_file(tokenizer, text, data / "train.bin")
    words = [f"data.train_path={data / 'train.bin'}", f"data.valid_path={data / 'train.bin'}",
             f"run.runs_dir={tmp_path / 'runs'}", "model.vocab_size=300",
             "model.context_length=16", "model.d_model=32", "model.num_layers=1",
             "model.num_heads=2", "train.batch_size=4", "train.max_steps=6",
             "train.time_budget_s=none", "train.schedule_over_time=false",
             "train.eval_interval=3", "optim.warmup_iters=1", "train.compile=false"]
    sweep = Sweep(config=PRESETS / "tinystories-cpu.toml", name="lr", overrides=words,
                  grid={"optim.lr_max": ["1e-3", "1e-2"]}, description="Two learning rates.")
    run_sweep(plan(sweep))
    report = write_report(tmp_path / "runs", tmp_path / "out" / "EXPERIMENTS.md").read_text()
    assert "Two learning rates." in report
    assert "Base config: `" in report and "tinystories-cpu.toml" in report
    assert "Every run changes from the base" not in report  # overrides are the base
    assert "Varied: `optim.lr_max`." in report
    assert "| `lr_max-0.001` | 0.001 | finished |" in report
    assert re.search(r"Sample from the best run, `lr_max-0.0\d+`.*\n\n```text\nOnce upon a time",
                     report)
    no_samples = write_report(tmp_path / "runs", tmp_path / "out" / "plain.md", samples=False)
    assert "Sample" not in no_samples.read_text()


@pytest.mark.parametrize(("make", "message"), [
    (lambda root: None, "no such folder of runs"),
    (lambda root: root.mkdir(), "holds no run directories"),
    (lambda root: (root / "x").mkdir(parents=True) or (root / "x" / "config.json").write_text(
        "{"), "config.json is not valid JSON"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                  make, message: str) -> None:
    make(tmp_path / "runs")
    out = tmp_path / "docs" / "EXPERIMENTS.md"
    code, _, err = cli(capsys, "report", str(tmp_path / "runs"), "--out", str(out))
    assert code == 1 and err.startswith("error: ") and message in err
    assert not out.exists()
