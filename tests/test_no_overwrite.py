"""No command writes over what it did not make: `lmlab export` and `import` over a file or into a
folder of something else, a sweep named like a run or put among loose runs, a run inside another
run or a sweep's folder. Each refusal is one line that names the file or folder and the way out;
the command's own earlier output is written over as before. (`plot` and `report` are tested in
tests/test_plot.py and tests/test_report.py, the tokenizer's commands in
tests/test_tokenize_cli.py.)"""

import json
from pathlib import Path

import pytest

from lmlab.nn import TransformerLM
from lmlab.tokenizer import Tokenizer
from lmlab.training.rundir import find_runs
from lmlab.weights import export_weights
from tests.helpers.fake_runs import fake_run
from tests.helpers.lmlab_cli import cli
from tests.helpers.paths import PRESETS


@pytest.fixture
def weights(tmp_path: Path, tiny_config) -> Path:
    """A tiny model file with a byte-level tokenizer bundled: something `lmlab export` reads."""
    tokenizer = Tokenizer({b: bytes([b]) for b in range(256)}, [], ["<|endoftext|>"])
    model = TransformerLM(tiny_config(vocab_size=257))
    path = tmp_path / "tiny.safetensors"
    export_weights(model, path, tokenizer.to_texts())
    return path


def test_export_writes_over_a_model_file_but_not_another_file(weights: Path, tmp_path: Path,
                                                              capsys) -> None:
    out = tmp_path / "model.safetensors"
    for _ in range(2):  # the second time over its own export
        code, _, err = cli(capsys, "export", weights, "--out", out)
        assert code == 0, err
    mine = tmp_path / "notes.safetensors"
    mine.write_bytes(b"not a model")
    code, _, err = cli(capsys, "export", weights, "--out", mine)
    assert code == 1 and err == (f"error: {mine} exists and is not an lmlab model file: choose "
                                 "another --out, or pass --force to overwrite it\n")
    assert mine.read_bytes() == b"not a model"
    assert cli(capsys, "export", weights, "--out", mine, "--force")[0] == 0
    assert mine.stat().st_size > 1000


def test_an_hf_export_fills_no_folder_it_did_not_make(weights: Path, tmp_path: Path,
                                                      capsys) -> None:
    folder = tmp_path / "hf"
    for _ in range(2):  # again into its own export
        code, _, err = cli(capsys, "export", weights, "--format", "hf", "--out", folder)
        assert code == 0, err
    (folder / "README.md").write_text("my notes")
    code, _, err = cli(capsys, "export", weights, "--format", "hf", "--out", folder)
    assert code == 1 and err == (f"error: {folder} holds files that lmlab export --format hf did "
                                 "not write (README.md): choose another --out, or pass --force "
                                 "to write into it\n")
    assert cli(capsys, "export", weights, "--format", "hf", "--out", folder, "--force")[0] == 0
    assert (folder / "README.md").read_text() == "my notes"  # --force writes, deletes nothing


def test_export_and_import_refuse_a_run_directory(tmp_path: Path, capsys) -> None:
    run = fake_run(tmp_path / "runs", "tiny", "finished", [5.0, 4.0])
    code, _, err = cli(capsys, "export", tmp_path / "x.safetensors", "--format", "hf",
                       "--out", run)
    assert code == 1 and f"error: {run} holds files that lmlab export --format hf did not " \
        "write (metrics.jsonl, status)" in err  # (its config.json is a name export writes too)
    code, _, err = cli(capsys, "import", tmp_path / "hf", "--out", run)
    assert code == 1 and err.startswith(f"error: {run} holds files that lmlab import did not "
                                        "write (config.json, metrics.jsonl, status)")
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.jsonl", "status"]


def test_a_sweep_is_not_put_in_a_run_or_among_loose_runs(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    fake_run(runs, "tinystories-cpu", "finished", [5.0, 4.0])
    fake_run(runs / "mine", "a", "finished", [5.0, 4.0])  # runs trained one by one into mine/
    words = ["--grid", "optim.lr_max=1e-3,1e-2", "--dry-run", "--no-measure"]
    code, _, err = cli(capsys, "sweep", "tinystories-cpu", f"run.runs_dir={runs}", *words)
    assert code == 1 and err == (f"error: the sweep's folder {runs / 'tinystories-cpu'} is the "
                                 f"run directory {runs / 'tinystories-cpu'}: choose another "
                                 "--name (or run.runs_dir)\n")
    code, _, err = cli(capsys, "sweep", "tinystories-cpu", f"run.runs_dir={runs}/tinystories-cpu",
                       "--name", "lr", *words)
    assert code == 1 and "lies in the run directory" in err
    code, _, err = cli(capsys, "sweep", "tinystories-cpu", f"run.runs_dir={runs}", "--name",
                       "mine", *words)
    assert code == 1 and err == (f"error: the sweep's folder {runs / 'mine'} holds runs that no "
                                 "sweep made (a): choose another --name\n")
    code, _, err = cli(capsys, "sweep", "tinystories-cpu", f"run.runs_dir={runs}", "--name",
                       "lr", *words)
    assert code == 0, err


@pytest.mark.parametrize(("where", "message"), [
    ("run.runs_dir={runs}/tinystories-cpu", "would lie inside the run directory {run}"),
    ("run.runs_dir={runs}/lr", "would lie in the folder of the sweep {runs}/lr without being one "
                               "of its points"),
    ("run.name=lr", "is the folder of a sweep (it holds sweep.json)"),
    ("run.runs_dir={runs}/.. run.name=runs", "holds other runs"),
])
def test_a_run_shares_no_folder_with_another_run_or_a_sweep(tmp_path: Path, capsys, where: str,
                                                            message: str) -> None:
    runs = tmp_path / "runs"
    run = fake_run(runs, "tinystories-cpu", "finished", [5.0, 4.0])
    fake_run(runs / "lr", "lr_max-0.001", "finished", [5.0, 4.0])
    (runs / "lr" / "sweep.json").write_text(json.dumps({"points": [{"name": "lr_max-0.001"}]}))
    before = _files(runs)
    code, _, err = cli(capsys, "train", PRESETS / "tinystories-cpu.toml", f"run.runs_dir={runs}",
                       *where.format(runs=runs).split(), "train.device=cpu", "--no-progress")
    assert code == 1 and err.startswith("error: run directory ")
    assert message.format(runs=runs, run=run) in err and err.count("\n") == 1
    assert _files(runs) == before  # nothing written


def _files(root: Path) -> list[str]:
    """Every file and folder under ``root`` but the lock a refused run took (and dropped)."""
    return sorted(str(path) for path in root.rglob("*") if path.name != ".lock")


def test_a_folder_inside_a_run_is_not_a_run(tmp_path: Path) -> None:
    """An exported Hugging Face folder has a config.json: the report and plots do not take it for
    a run of its own."""
    run = fake_run(tmp_path / "runs", "tiny", "finished", [5.0, 4.0])
    (run / "hf").mkdir()
    (run / "hf" / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert find_runs(tmp_path / "runs") == [run]
