"""The README's commands, as written (litgpt's test_readme idea).

The quickstart block runs for real, in a fresh folder, on the shared TinyStories sample: the test
only appends a small budget (a few steps of a smaller model) to `lmlab quickstart`. The other
blocks (the GPU recipe, generation) would take hours or need a network, so they are parsed by the
CLI instead: every command, option and argument they use must exist.
"""

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.readme import bash_blocks, commands, parse

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--steps", "3", "--no-progress", "model.vocab_size=512", "model.context_length=64",
         "model.num_layers=1", "train.batch_size=8", "train.eval_batches=4",
         "train.compile=false"]
"""Appended to `lmlab quickstart`: seconds instead of the preset's ten minutes."""


def run(words: list[str], cwd: Path) -> str:
    """Run an `lmlab ...` command with this interpreter; fail with its stderr, return stdout."""
    assert words[0] == "lmlab"
    done = subprocess.run([sys.executable, "-m", "lmlab", *words[1:]], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{shlex.join(words)} failed:\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_quickstart_block_runs_as_written(tmp_path):
    block = bash_blocks("Quickstart")[0]
    quickstart, generate = commands(block)
    # The README runs from the checkout, where ../shared/data is the team's data; here it runs
    # from a fresh folder, so relative paths that exist from the checkout are made absolute.
    shared = [ROOT / word for word in quickstart if word.startswith("../")]
    if not all(path.is_file() for path in shared):
        pytest.skip(f"shared data not found at {shared}")
    quickstart = [str((ROOT / w).resolve()) if w.startswith("../") else w for w in quickstart]

    out = run(quickstart + QUICK, tmp_path)
    loss = float(re.search(r"==> evaluated .* val/loss (\S+)", out).group(1))
    assert math.isfinite(loss) and 0 < loss < math.log(512) + 1
    sample = out.split("==> sample", 1)[1].split("\n", 1)[1]
    assert sample.startswith("Once upon a time") and len(sample) > len("Once upon a time\n")

    run_dir = tmp_path / "runs" / "quickstart" / "tinystories-cpu"
    assert (run_dir / "status").read_text().strip() == "finished"
    assert json.loads((run_dir / "config.json").read_text())["train"]["max_steps"] == 3
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "runs" / "quickstart" / "data" / "tokenizer" / "vocab.json").is_file()

    assert generate[2] == str(run_dir.relative_to(tmp_path))
    text = run(generate, tmp_path)
    assert text.startswith("Once upon a time") and len(text) > len("Once upon a time\n")


def as_lmlab(words: list[str]) -> list[str]:
    """``torchrun ... -m lmlab ARGS`` as the ``lmlab ARGS`` that each process runs."""
    if words[0] == "torchrun":
        return ["lmlab", *words[words.index("lmlab") + 1:]]
    return words


@pytest.mark.parametrize(
    "words",
    [as_lmlab(words) for section in ("Quickstart", "Multiple GPUs", "Generation",
                                    "Use your model elsewhere")
     for block in bash_blocks(section) for words in commands(block)
     if words[0] in ("lmlab", "torchrun")],  # (not the pip install lines)
    ids=shlex.join,
)
def test_every_readme_command_parses(words):
    """Each command names real subcommands and options with valid values (nothing runs)."""
    parse(words)


TINY = ["model.d_model=32", "model.num_layers=1", "model.num_heads=2", "model.context_length=32",
        "train.batch_size=4", "train.eval_batches=2", "train.eval_interval=0",
        "train.ckpt_interval=0", "train.time_budget_s=1", "train.schedule_over_time=false",
        "train.max_steps=4",
        "train.compile=false"]  # the CPU preset compiles: ~10 s for each of the flow's runs
"""Appended to each `lmlab train` and `lmlab sweep` of the flow: a few steps of a tiny model."""


@pytest.mark.slow
def test_the_training_and_experiments_flow_runs_as_written(shared_data, tmp_path):
    """tokenize -> train -> eval -> sweep -> plot -> report, as the README's Training and
    Experiments sections write them, in a fresh folder whose data/tinystories holds the shared
    TinyStories sample (what `lmlab data download tinystories` would put there)."""
    text = tmp_path / "data" / "tinystories"
    text.mkdir(parents=True)
    for split in ("train", "valid"):
        (text / f"{split}.txt").write_bytes((shared_data / "tinystories" / f"{split}.txt")
                                            .read_bytes()[:300_000])
    flow = [words for section in ("Training", "Experiments")
            for words in commands(bash_blocks(section)[0])]
    assert [w[1] for w in flow].count("sweep") >= 3 and flow[-1][1] == "report"
    for words in flow:
        if words[1] in ("train", "sweep") and "--dry-run" not in words:
            words = [*words, *TINY]
        out = run(words, tmp_path)
        if words[1] == "train" and "--resume" in words:
            assert out.startswith("had already finished")  # the preset run resumed, finished
    assert (tmp_path / "lr.png").stat().st_size > 0 and (tmp_path / "a.svg").stat().st_size > 0
    report = (tmp_path / "EXPERIMENTS.md").read_text()
    assert "lr_sweep" in report and "lr_max-0.001" in report
