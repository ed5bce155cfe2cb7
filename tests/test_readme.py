"""The README is a front page that stays true: its commands run as written (litgpt's
test_readme idea), it fits on a page, and it names no path outside the repository.

The main job (`lmlab quickstart`, no data flags) runs for real in a fresh folder against a local
stand-in for the Hugging Face Hub that serves the shared TinyStories sample in place of the
download; the test only appends a small budget. The jobs table runs in order in another fresh
folder, each command as written plus a tiny model; the commands that need a network or several
GPUs are parsed by the CLI instead.
"""

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.hub import local_hub
from tests.helpers.paths import REPO
from tests.helpers.readme import README, as_lmlab, bash_blocks, commands, parse, table_commands

TEXT = README.read_text(encoding="utf-8")
QUICK = ["--steps", "3", "optim.warmup_iters=1", "--no-progress", "model.vocab_size=512",
         "model.context_length=64", "model.num_layers=1", "train.batch_size=8",
         "train.eval_batches=4", "train.compile=false"]
"""Appended to `lmlab quickstart`: seconds instead of the preset's ten minutes."""
TINY = ["model.d_model=32", "model.num_layers=1", "model.num_heads=2", "model.context_length=32",
        "train.batch_size=4", "train.eval_batches=2", "train.eval_interval=0",
        "train.ckpt_interval=0", "train.time_budget_s=1", "train.schedule_over_time=false",
        "train.max_steps=4", "optim.warmup_iters=1",
        "train.compile=false"]  # the CPU preset compiles: ~10 s for each of the flow's runs
"""Appended to each `lmlab train` and `lmlab sweep` of the jobs table: a tiny model."""


def run(words: list[str], cwd: Path) -> str:
    """Run an `lmlab ...` command with this interpreter; fail with its stderr, return stdout."""
    assert words[0] == "lmlab"
    done = subprocess.run([sys.executable, "-m", "lmlab", *words[1:]], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{shlex.join(words)} failed:\n{done.stderr}"
    return done.stdout


def test_the_readme_is_a_front_page() -> None:
    assert len(TEXT.splitlines()) <= 200
    assert not re.search(r"\.\./|/work/|shared/data|/home/|/root/", TEXT), "a path of ours"
    assert TEXT.index("## Install") < TEXT.index("## The main job") < TEXT.index(
        "## One command per job") < TEXT.index("## CS336") < TEXT.index("## Figures") < TEXT.index(
        "## Guides")
    assert commands(bash_blocks("The main job")[0])[0] == ["lmlab", "quickstart"]  # no data flags


@pytest.mark.slow
def test_the_main_job_runs_as_written(shared_data, tmp_path, monkeypatch):
    quickstart, generate = commands(bash_blocks("The main job")[0])
    texts = {name: (shared_data / "tinystories" / f"{split}.txt").read_bytes()
             for name, split in (("TinyStoriesV2-GPT4-train.txt", "train"),
                                 ("TinyStoriesV2-GPT4-valid.txt", "valid"))}
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "fresh"
    folder.mkdir()
    with local_hub(b"", monkeypatch, files=texts) as hub:
        out = run(quickstart + QUICK, folder)
    assert {path.rsplit("/", 1)[1] for path, _ in hub.requests} == set(texts)  # both fetched
    loss = float(re.search(r"==> evaluated .* val/loss (\S+)", out).group(1))
    assert math.isfinite(loss) and 0 < loss < math.log(512) + 1
    sample = out.split("==> sample", 1)[1].split("\n", 1)[1]
    assert sample.startswith("Once upon a time") and len(sample) > len("Once upon a time\n")

    run_dir = folder / "runs" / "quickstart" / "tinystories-cpu"
    assert (run_dir / "status").read_text().strip() == "finished"
    assert json.loads((run_dir / "config.json").read_text())["train"]["max_steps"] == 3
    assert generate[2] == str(run_dir.relative_to(folder))
    text = run(generate, folder)
    assert text.startswith("Once upon a time") and len(text) > len("Once upon a time\n")


def test_the_main_job_offline_ends_in_one_line_that_says_what_to_do(tmp_path):
    words = commands(bash_blocks("The main job")[0])[0]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1",
           "LMLAB_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "lmlab", *words[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "lmlab quickstart --train-text FILE --valid-text FILE" in lines[0]


JOBS = table_commands("One command per job")


@pytest.mark.parametrize("words", [as_lmlab(w) for block in bash_blocks() for w in
                                   commands(block) if w[0] in ("lmlab", "torchrun")] + JOBS,
                         ids=shlex.join)
def test_every_readme_command_parses(words):
    """Each command names real subcommands and options with valid values (nothing runs)."""
    parse(words)


@pytest.mark.slow
def test_the_jobs_run_in_order_as_written(shared_data, tmp_path):
    """Every job of the table, in its order, in a fresh folder whose data/tinystories holds
    the start of the shared TinyStories sample (what `lmlab data download` would put there)."""
    text = tmp_path / "data" / "tinystories"
    text.mkdir(parents=True)
    for split in ("train", "valid"):
        (text / f"{split}.txt").write_bytes((shared_data / "tinystories" / f"{split}.txt")
                                            .read_bytes()[:300_000])
    ran = []
    for words in JOBS:
        if words[1:3] == ["data", "download"] or "--nproc" in words:
            continue  # the network (the shared sample stands in), several GPUs: parsed only
        if words[1] in ("train", "sweep"):
            words = [*words, *TINY]
        out = run(words, tmp_path)
        ran.append(words[1:3])
        if words[1:3] == ["tokenizer", "encode"]:  # the table says: then valid.txt likewise
            run([w.replace("train.", "valid.") for w in words], tmp_path)
        if words[1] == "train" and "--resume" in words:
            assert out.startswith("had already finished")  # the run resumed, finished
    assert len(ran) == len(JOBS) - 2  # all but the download and the several GPUs
    assert (tmp_path / "lr-curves.png").stat().st_size > 0
    assert "lr_max-0.001" in (tmp_path / "report" / "EXPERIMENTS.md").read_text()
    assert (tmp_path / "runs" / "tinystories-cpu" / "hf" / "config.json").is_file()


def test_the_cs336_table_names_every_experiment():
    experiments = {p.stem for p in (REPO / "src" / "lmlab" / "presets" / "experiments").glob(
        "*.toml")} - {"cpu-base", "leaderboard"}
    table = TEXT.split("## CS336", 1)[1].split("\n## ", 1)[0]
    assert {name for name in experiments if f"| `{name}` |" in table} == experiments
