"""`lmlab generate`: stream a completion from a trained run to the terminal."""

import re
from collections.abc import Iterable
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.cli.options import Device, RunTokenizer, TrainedModel, load_trained
from lmlab.errors import ConfigError
from lmlab.sampling import DEFAULT_MAX_NEW_TOKENS, DEFAULT_SAMPLING, Sampling
from lmlab.text import plural


def stream(pieces: Iterable[str], prompt: str) -> None:
    """Echo the prompt, then each piece of text as soon as it is decoded, then a newline."""
    typer.echo(prompt, nl=False)
    for piece in pieces:
        typer.echo(piece, nl=False)
    typer.echo()


def _sampling(temperature: float, top_k: int | None, top_p: float) -> Sampling:
    """The sampling options, checked by :class:`Sampling`, with errors naming the flags as typed
    (``--top-k must be >= 1``)."""
    try:
        return Sampling(temperature=temperature, top_k=top_k, top_p=top_p)
    except ConfigError as exc:
        flag = re.sub(r"^(temperature|top_p|top_k)\b",
                      lambda match: "--" + match.group(1).replace("_", "-"), str(exc))
        raise ConfigError(flag) from None


@app.command("generate")
def generate_command(
    run: TrainedModel,
    prompt: Annotated[str, typer.Option(
        help="Text to continue; empty: start a new document.")] = "",
    max_new_tokens: Annotated[int, typer.Option(
        min=0, help="Most tokens to generate (fewer when <|endoftext|> comes first).")
    ] = DEFAULT_MAX_NEW_TOKENS,
    temperature: Annotated[float, typer.Option(
        help="Divide the logits by this; 0 = greedy (always the most likely token).")
    ] = DEFAULT_SAMPLING.temperature,
    top_p: Annotated[float, typer.Option(
        help="Nucleus sampling: draw from the smallest set of tokens holding this much "
        "probability (1 = all).")] = DEFAULT_SAMPLING.top_p,
    top_k: Annotated[int | None, typer.Option(
        help="Draw from the k most likely tokens only (default: all).", show_default=False)
    ] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed of the sampler: the same seed gives the same text (default: random).",
        show_default=False)] = None,
    tokenizer: RunTokenizer = None,
    device: Device = "auto",
    study: Annotated[bool, typer.Option(
        "--study", help="The generation study instead of one sample: one sample at each "
        "temperature 0.7, 1.0, 1.2 x top-p 0.9, 1.0 (same seed, default 0), each with the mean "
        "log-probability per token the model gave it, as Markdown (--temperature, --top-p and "
        "--top-k are then not used).")] = False,
) -> None:
    """Continue a prompt with a trained model, streaming the text.

    Each piece of text is printed as soon as its tokens are sampled and decode to whole
    characters.

    \b
    Examples:
      lmlab generate runs/tinystories-cpu --prompt 'Once upon a time' --seed 0
      lmlab generate runs/tinystories-cpu/model.safetensors --temperature 0
      lmlab generate runs/tinystories-cpu --study --prompt 'Once upon a time'
    """
    from lmlab.device import resolve_device
    from lmlab.inference import complete, generation_study

    sampling = _sampling(temperature, top_k, top_p)
    model, _, tok = load_trained(run, tokenizer, device=resolve_device(device))
    if study:
        for sample in generation_study(model, tok, prompt, max_new_tokens, seed or 0):
            typer.echo(f"### temperature {sample.sampling.temperature:g}, top-p "
                       f"{sample.sampling.top_p:g}: {plural(sample.num_tokens, 'token')}, mean "
                       f"log-prob {sample.mean_logprob:.3f} nats/token\n\n```text\n"
                       f"{prompt}{sample.text}\n```\n")
        return
    stream(complete(model, tok, prompt, max_new_tokens, sampling, seed), prompt)
