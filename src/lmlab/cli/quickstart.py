"""`lmlab quickstart`: the CLI over :func:`lmlab.quickstart.quickstart`, plus a sample."""

from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.cli.generate import stream
from lmlab.errors import LmlabError


@app.command("quickstart")
def quickstart_command(
    overrides: Annotated[list[str] | None, typer.Argument(
        help="Config overrides as section.key=value, e.g. model.d_model=64.",
        show_default=False)] = None,
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
        help="Config to train (default: configs/tinystories-cpu.toml).", show_default=False)
    ] = None,
    prompt: Annotated[str, typer.Option(help="Start of the sample printed at the end.")
    ] = "Once upon a time",
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="Draw progress bars.")] = True,
) -> None:
    """The whole pipeline in one command, on TinyStories.

    Train a tokenizer, tokenize, train the tinystories-cpu model (about ten minutes on two CPU
    cores), evaluate it and print a sample."""
    from lmlab.generate import Sampling
    from lmlab.inference import complete, load_run
    from lmlab.quickstart import quickstart

    words = list(overrides or [])
    if steps is not None:
        words += [f"train.max_steps={steps}", "train.schedule_over_time=false"]
    if time_budget is not None:
        words += [f"train.time_budget_s={time_budget}"]
    result = quickstart(out, train_text, valid_text, config_path=config, overrides=words,
                        show_progress=progress, on_step=lambda line: typer.echo(f"==> {line}"))
    if result.status != "finished":
        raise LmlabError(f"the run stopped at step {result.step} ({result.status}); metrics "
                         f"kept in {result.run_dir}")
    metrics = "  ".join(f"{key} {value:.4f}" for key, value in result.metrics.items()
                        if key.startswith("val/"))
    typer.echo(f"==> evaluated {result.run_dir} after {result.step} steps "
               f"({result.tokens:,} tokens): {metrics}")
    model, _, tokenizer = load_run(result.run_dir)
    typer.echo(f"==> sample (lmlab generate {result.run_dir} --prompt '{prompt}' --seed 0):")
    stream(complete(model, tokenizer, prompt, 200, Sampling(temperature=0.8, top_p=0.95),
                    seed=0), prompt)
