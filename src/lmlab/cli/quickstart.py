"""`lmlab quickstart`: the CLI over :func:`lmlab.quickstart.quickstart`, plus a sample."""

import shlex
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.cli.generate import stream
from lmlab.cli.options import Overrides


@app.command("quickstart")
def quickstart_command(
    overrides: Overrides = None,
    train_text: Annotated[Path | None, typer.Option(
        help="UTF-8 training text, documents separated by <|endoftext|> (default: download "
        "TinyStories).", show_default=False)] = None,
    valid_text: Annotated[Path | None, typer.Option(
        help="UTF-8 validation text (give it with --train-text).", show_default=False)] = None,
    out: Annotated[Path, typer.Option(
        help="New folder for the tokenizer, token files and the run.")] = Path("runs/quickstart"),
    steps: Annotated[int | None, typer.Option(
        min=1, help="Train for this many steps, with the schedule over them (default: the "
        "config's ten-minute time budget).", show_default=False)] = None,
    time_budget: Annotated[float | None, typer.Option(
        min=1, help="Train for this many seconds instead of the config's 600.",
        show_default=False)] = None,
    config: Annotated[Path | None, typer.Option(
        help="Config file or preset to train (default: the tinystories-cpu preset).",
        show_default=False)
    ] = None,
    prompt: Annotated[str, typer.Option(help="Start of the sample printed at the end.")
    ] = "Once upon a time",
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Draw progress bars.")] = True,
) -> None:
    """The whole pipeline in one command, on TinyStories.

    Train a tokenizer, tokenize, train the tinystories-cpu model (about ten minutes on two CPU
    cores), evaluate it and print a sample.

    \b
    Examples:
      lmlab quickstart
      lmlab quickstart --train-text train.txt --valid-text valid.txt --steps 200
      lmlab quickstart model.d_model=64 --time-budget 60 --out runs/qs64
    """
    from lmlab.errors import LmlabError
    from lmlab.generate import Sampling
    from lmlab.inference import complete, load_run
    from lmlab.quickstart import CONFIG, quickstart
    from lmlab.text import plural
    from lmlab.training.outcome import Hints, outcome

    words = list(overrides or [])
    if steps is not None:
        words += [f"train.max_steps={steps}", "train.schedule_over_time=false"]
    if time_budget is not None:
        words += [f"train.time_budget_s={time_budget}"]
    data = out / "data"
    again = ["lmlab", "train", str(config or CONFIG), *words,
             f"data.train_path={data / 'train.bin'}", f"data.valid_path={data / 'valid.bin'}",
             f"run.runs_dir={out}"]
    hints = Hints(shlex.join([*again, "--resume"]), shlex.join([*again, "run.resume=auto"]))
    try:
        result = quickstart(out, train_text, valid_text, config_path=config, overrides=words,
                            show_progress=progress,
                            on_step=lambda line: typer.echo(f"==> {line}"))
    except LmlabError:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        done = _stopped(exc, out, config, words, hints)
        typer.echo(done.message, err=True)
        raise typer.Exit(done.exit_code) from None
    if result.status != "finished":
        done = outcome(result, hints)
        typer.echo(done.message, err=done.to_stderr)
        raise typer.Exit(done.exit_code)
    metrics = "  ".join(f"{key} {value:.4f}" for key, value in result.metrics.items()
                        if key.startswith("val/"))
    typer.echo(f"==> evaluated {result.run_dir} after {plural(result.step, 'step')} "
               f"({result.tokens:,} tokens): {metrics}")
    model, _, tokenizer = load_run(result.run_dir)
    typer.echo(f"==> sample (lmlab generate {result.run_dir} --prompt '{prompt}' --seed 0):")
    stream(complete(model, tokenizer, prompt, 200, Sampling(temperature=0.8, top_p=0.95),
                    seed=0), prompt)


def _stopped(exc: BaseException, out: Path, config: Path | None, words: list[str], hints):
    """How a quickstart that ended in ``exc`` (Ctrl-C, a crash) is told: once its token files
    are written, as a run that stopped (:func:`~lmlab.training.outcome.stopped`: resumed or
    restarted with ``lmlab train``); before, the quickstart itself is the command to run again,
    into an empty ``--out``."""
    import traceback

    from lmlab.config import load_config
    from lmlab.errors import first_line
    from lmlab.quickstart import default_config
    from lmlab.tokens import sidecar_path
    from lmlab.training.outcome import EXIT_CODES, Outcome, stopped

    interrupted = isinstance(exc, KeyboardInterrupt)
    if not interrupted:
        traceback.print_exc()  # unforeseen: where it happened, for a bug report
    if all(sidecar_path(out / "data" / f"{split}.bin").is_file() for split in ("train", "valid")):
        run_dir = out / load_config(config or default_config(), words).run.name
        return stopped(run_dir, exc, hints)
    how = ("interrupted" if interrupted else
           f"error: quickstart failed ({type(exc).__name__}: {first_line(exc)})")
    return Outcome(f"{how} while preparing the data in {out}: remove that folder, then run the "
                   f"same lmlab quickstart command again",
                   EXIT_CODES["interrupted" if interrupted else "failed"], True)
