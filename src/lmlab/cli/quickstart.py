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
    from lmlab.generate import Sampling
    from lmlab.inference import complete, load_run
    from lmlab.quickstart import CONFIG, quickstart
    from lmlab.training.outcome import outcome

    words = list(overrides or [])
    if steps is not None:
        words += [f"train.max_steps={steps}", "train.schedule_over_time=false"]
    if time_budget is not None:
        words += [f"train.time_budget_s={time_budget}"]
    result = quickstart(out, train_text, valid_text, config_path=config, overrides=words,
                        show_progress=progress, on_step=lambda line: typer.echo(f"==> {line}"))
    if result.status != "finished":
        data = out / "data"
        done = outcome(result, shlex.join([
            "lmlab", "train", str(config or CONFIG), *words,
            f"data.train_path={data / 'train.bin'}", f"data.valid_path={data / 'valid.bin'}",
            f"run.runs_dir={out}", "--resume"]))
        typer.echo(done.message, err=done.to_stderr)
        raise typer.Exit(done.exit_code)
    metrics = "  ".join(f"{key} {value:.4f}" for key, value in result.metrics.items()
                        if key.startswith("val/"))
    typer.echo(f"==> evaluated {result.run_dir} after {result.step} steps "
               f"({result.tokens:,} tokens): {metrics}")
    model, _, tokenizer = load_run(result.run_dir)
    typer.echo(f"==> sample (lmlab generate {result.run_dir} --prompt '{prompt}' --seed 0):")
    stream(complete(model, tokenizer, prompt, 200, Sampling(temperature=0.8, top_p=0.95),
                    seed=0), prompt)
