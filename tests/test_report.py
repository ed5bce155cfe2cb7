"""`lmlab report`: every run in a table, figures written and linked, the sweep's base and
changes, a sample from the best run (saved or generated), and bad input; loose single runs
listed as runs, not analysed as a sweep; and no file written over that the report did not
write."""

import json
import re
import statistics
from pathlib import Path

import pytest
from scipy import stats

from lmlab.experiments import report as report_module
from lmlab.experiments.figures import MANIFEST
from lmlab.experiments.planning import plan
from lmlab.experiments.report import write_report
from lmlab.experiments.runner import run_sweep
from lmlab.experiments.stats import format_p
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
    no_samples = write_report(tmp_path / "runs", tmp_path / "plain" / "plain.md", samples=False)
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


def _configured(path: Path, **sections: dict) -> Path:
    """Merge ``sections`` (``model={"d_model": 64}``) into a fake run's config."""
    config = json.loads((path / "config.json").read_text())
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    (path / "config.json").write_text(json.dumps(config))
    return path


def _sweep_json(folder: Path) -> None:
    """What `lmlab sweep` writes beside its points (the keys the report reads)."""
    points = [{"name": p.name} for p in sorted(folder.iterdir()) if p.is_dir()]
    (folder / "sweep.json").write_text(json.dumps(
        {"config": "cpu-base.toml", "overrides": [], "base": {}, "points": points}))


def test_loose_runs_are_listed_not_analysed_as_a_sweep(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """Single runs that happen to differ in their rate and their model get a table, but no edge
    of stability or lr figure; in a sweep folder (sweep.json) the same runs get both."""
    for root in (tmp_path / "runs", tmp_path / "sweeps" / "lr"):
        _configured(fake_run(root, "small", "finished", [5.0, 4.0, 3.0], lr_max=1e-3),
                    model={"d_model": 32})
        _configured(fake_run(root, "big", "diverged", [5.0, 9.0], lr_max=1e-1),
                    model={"d_model": 64})
    _sweep_json(tmp_path / "sweeps" / "lr")
    out = tmp_path / "loose" / "EXPERIMENTS.md"
    assert cli(capsys, "report", tmp_path / "runs", "--out", out, "--no-samples")[0] == 0
    text = out.read_text()
    assert "Single runs, not a sweep" in text and "| `small` |" in text and "| `big` |" in text
    assert "They differ in: `model.d_model`, `optim.lr_max`." in text
    assert "Edge of stability" not in text and "_lr.png" not in text
    assert not (out.parent / "runs_lr.png").exists()
    swept = tmp_path / "swept" / "EXPERIMENTS.md"
    assert cli(capsys, "report", tmp_path / "sweeps", "--out", swept, "--no-samples")[0] == 0
    text = swept.read_text()
    assert "Single runs" not in text
    assert "Edge of stability (d_model=32): best lr 0.001" in text and "(lr_lr.png)" in text


def test_a_run_given_alone_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = fake_run(tmp_path / "runs", "a", "finished", [5.0, 4.0, 3.0])
    out = tmp_path / "out" / "R.md"
    code, _, err = cli(capsys, "report", run, "--out", out, "--no-samples")
    assert code == 0, err
    assert "## a\n" in out.read_text() and (out.parent / "a.png").is_file()


def test_loose_runs_that_differ_only_in_the_rate_get_the_edge(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake_run(runs, "lr3e-3", "finished", [5.0, 4.0, 3.0, 2.5], lr_max=3e-3)
    fake_run(runs, "tinystories-cpu", "finished", [5.0, 4.0, 3.5, 3.0], lr_max=1e-3)
    text = write_report(runs, tmp_path / "out" / "R.md", samples=False).read_text()
    assert "Single runs, not a sweep" in text
    assert "Edge of stability: best lr 0.003" in text and "(runs_lr.png)" in text


def test_a_series_where_every_rate_diverged_is_on_the_best_rate_figures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs" / "batch"
    for batch, statuses in ((4, ("finished", "diverged")), (64, ("diverged", "diverged"))):
        for lr, status in zip((1e-2, 3e-2), statuses, strict=True):
            losses = [5.0, 4.0, 3.0, 2.0] if status == "finished" else [5.0, 4.0, 9.0, 9.0]
            _configured(fake_run(root, f"b{batch}_lr{lr:g}", status, losses, lr_max=lr),
                        train={"batch_size": batch})
    _sweep_json(root)
    saved, save = {}, report_module.save_figure

    def keep(figure, path: Path, **options):
        saved[path.name] = figure
        return save(figure, path, **options)

    monkeypatch.setattr(report_module, "save_figure", keep)
    text = write_report(tmp_path / "runs", tmp_path / "out" / "R.md", samples=False).read_text()
    assert "Edge of stability (batch_size=64): no rate finished." in text
    legend = [t.get_text() for t in saved["batch_best_steps.png"].legends[0].get_texts()]
    assert legend == ["batch_size=4", "batch_size=64 (diverged)"]


def test_the_report_writes_over_its_own_files_and_no_others(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    fake_run(runs / "lr", "a", "finished", [5.0, 4.0, 3.0], lr_max=1e-3)
    fake_run(runs / "lr", "b", "finished", [5.0, 4.0, 3.5], lr_max=1e-2)
    out = tmp_path / "docs" / "EXPERIMENTS.md"
    out.parent.mkdir()
    mine = out.parent / "lr.png"
    mine.write_bytes(b"the user's own figure")
    code, _, err = cli(capsys, "report", runs, "--out", out, "--no-samples")
    assert code == 1 and err == (f"error: {mine} exists and lmlab report did not write it: "
                                 "choose another --out, or pass --force to overwrite it\n")
    assert mine.read_bytes() == b"the user's own figure" and not out.exists()
    mine.unlink()
    assert cli(capsys, "report", runs, "--out", out, "--no-samples")[0] == 0
    written = json.loads((out.parent / MANIFEST).read_text())["files"]
    assert sorted(written) == ["EXPERIMENTS.md", "lr.png", "lr_lr.png"]
    assert cli(capsys, "report", runs, "--out", out, "--no-samples")[0] == 0  # its own: again
    other = out.parent / "OTHER.md"  # another report in the same folder: not its files
    code, _, err = cli(capsys, "report", runs, "--out", other, "--no-samples")
    assert code == 1 and "belongs to the report" in err and str(out) in err
    out.write_text("# Edited by hand\n")
    code, _, err = cli(capsys, "report", runs, "--out", out, "--no-samples")
    assert code == 1 and f"{out} exists and it was changed since lmlab report wrote it" in err
    assert cli(capsys, "report", runs, "--out", out, "--no-samples", "--force")[0] == 0
    assert out.read_text().startswith("# Experiments")


def test_a_report_is_not_written_into_a_run_directory(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    run = fake_run(tmp_path / "runs", "a", "finished", [5.0, 4.0])
    out = run / "notes" / "EXPERIMENTS.md"
    code, _, err = cli(capsys, "report", tmp_path / "runs", "--out", out)
    assert code == 1 and err == (f"error: {out} would be written into the run directory {run}: "
                                 "choose another --out, or pass --force to write there\n")
    assert not out.parent.exists()


def test_an_ablation_compares_each_arm_with_its_baseline_seed_by_seed(tmp_path: Path) -> None:
    """Each arm at the baseline's rates and at its own best, paired by seed index, with the
    p-value and interval SciPy gives for the same numbers."""
    root = tmp_path / "runs" / "ablation"
    finals = {("rms", 1e-3): [3.41, 3.38, 3.40], ("rms", 3e-3): [3.30, 3.29, 3.33],
              ("none", 1e-3): [3.52, 3.47, 3.49], ("none", 3e-3): [4.9, 5.3, 5.1]}
    for (norm, lr), values in finals.items():
        for seed, final in enumerate(values):
            _configured(fake_run(root, f"norm-{norm}__lr_max-{lr:g}__seed-{seed}", "finished",
                                 [5.0, 4.0, 3.9, final - 0.1], lr_max=lr),
                        model={"norm": norm}, train={"seed": seed})
    _sweep_json(root)
    sweep = json.loads((root / "sweep.json").read_text())
    (root / "sweep.json").write_text(json.dumps({**sweep, "base": {"model": {"norm": "rms"}}}))
    text = write_report(tmp_path / "runs", tmp_path / "out" / "R.md", samples=False).read_text()
    assert "Each arm against the baseline, `norm=rms`" in text
    same_rate = stats.ttest_rel(finals["none", 1e-3], finals["rms", 1e-3])
    low, high = same_rate.confidence_interval(0.95)
    diff = statistics.fmean(finals["none", 1e-3]) - statistics.fmean(finals["rms", 1e-3])
    assert (f"| `norm=none` | `norm=rms` | lr_max=0.001 | {diff:+.4f} [{low:+.4f}, "
            f"{high:+.4f}] | worse (p = {format_p(same_rate.pvalue)}, paired) |") in text
    own_best = stats.ttest_rel(finals["none", 1e-3], finals["rms", 3e-3])
    assert "| `norm=none` | `norm=rms` | own best: 0.001 vs 0.003 | " in text
    assert f"worse (p = {format_p(own_best.pvalue)}, paired) |" in text
    assert "| vs best (95% CI) | verdict |" in text  # the table of points, each against the best
