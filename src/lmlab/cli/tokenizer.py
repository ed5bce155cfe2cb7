"""`lmlab tokenizer train`, `encode` and `export`: the CLI over :mod:`lmlab.tokenizer` and
:mod:`lmlab.tokens` (and `lmlab tokenize`, the old name of `lmlab tokenizer encode`)."""

import inspect
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.cli.options import TOKENIZER_DIR_HELP, Force, TokenizerDir, Workers, check_folder
from lmlab.text import plural
from lmlab.tokenizer import Tokenizer, train_bpe
from lmlab.tokenizer.tokenizer import MERGES_FILE, SPECIALS_FILE, VOCAB_FILE
from lmlab.tokens import sidecar_path, tokenize_file

tokenizer_app = typer.Typer(help="""Train byte-level BPE tokenizers, encode text, export them.

\b
Examples:
  lmlab tokenizer train --input train.txt --vocab-size 2048 --out tok
  lmlab tokenizer encode --tokenizer tok --input train.txt --out train.bin
""", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")

HF_FILES = frozenset({"tokenizer.json", "tokenizer_config.json"})
"""What ``lmlab tokenizer export`` writes."""
TOKENIZER_FILES = frozenset({VOCAB_FILE, MERGES_FILE, SPECIALS_FILE}) | HF_FILES
"""What a tokenizer folder holds: ``tokenizer train``'s files and ``tokenizer export``'s."""


class TokenizerFormat(StrEnum):
    """What ``lmlab tokenizer export`` writes."""

    hf = "hf"


@tokenizer_app.command("train")
def train(
    input: Annotated[Path, typer.Option(help="UTF-8 text file to learn the merges from.")],
    vocab_size: Annotated[
        int, typer.Option(help="Size of the vocabulary: special tokens + 256 bytes + merges.")
    ],
    out: Annotated[
        Path, typer.Option(help="Directory to write vocab.json, merges.txt, special_tokens.json "
                           "(a new one, or a tokenizer's: other files in it need --force).")
    ],
    special_token: Annotated[
        list[str] | None,
        typer.Option(
            help="A special token (e.g. '<|endoftext|>'): splits the text, never merged, gets its "
            "own id. Repeat the option for several."
        ),
    ] = None,
    workers: Workers = None,
    force: Force = False,
) -> None:
    """Learn a byte-level BPE vocabulary and merges from a text file.

    \b
    Examples:
      lmlab tokenizer train --input data/tinystories/train.txt --vocab-size 2048 \\
          --special-token '<|endoftext|>' --out data/tinystories-2k/tokenizer
    """
    check_folder(out, TOKENIZER_FILES, "lmlab tokenizer train", force)
    vocab, merges = train_bpe(input, vocab_size, special_token, num_workers=workers)
    tokenizer = Tokenizer(vocab, merges, special_token)
    tokenizer.save(out)
    typer.echo(f"wrote {len(vocab)} tokens ({plural(len(merges), 'merge')}) to {out}")


@tokenizer_app.command("encode")
def encode(
    tokenizer: TokenizerDir,
    input: Annotated[Path, typer.Option(help="UTF-8 text file to encode.")],
    out: Annotated[
        Path,
        typer.Option(help="Token file to write, e.g. train.bin (its sidecar: train.bin.json). "
                     "An existing one is written over only when its sidecar shows this command "
                     "wrote it (or with --force)."),
    ],
    workers: Workers = None,
    force: Force = False,
) -> None:
    """Encode a text file into a .bin of token ids and a sidecar.

    The .bin is a flat array of uint16 ids (uint32 above 65,536 tokens), ready for np.memmap;
    the JSON sidecar beside it says what it holds and which tokenizer wrote it. Prints the
    compression: UTF-8 bytes of text per token.

    \b
    Examples:
      lmlab tokenizer encode --tokenizer data/tinystories-2k/tokenizer \\
          --input data/tinystories/valid.txt --out data/tinystories-2k/valid.bin
    """
    _check_token_file(out, force)
    info = tokenize_file(Tokenizer.load(tokenizer), input, out, num_workers=workers,
                         tokenizer_dir=tokenizer)
    typer.echo(f"wrote {info.count:,} {info.dtype} ids to {out} and {sidecar_path(out)}: "
               f"{info.source_bytes / info.count:.2f} bytes per token (the compression ratio)")


def _check_token_file(out: Path, force: bool) -> None:
    """Refuse to write the token file ``out`` (and its sidecar) over files that ``lmlab tokenizer
    encode`` did not write, unless ``force``: encoding again over its own file still works."""
    import json

    from lmlab.errors import ConfigError, DataError
    from lmlab.tokens import FORMAT, read_token_info

    side = sidecar_path(out)
    if out.is_dir() or side.is_dir():
        raise ConfigError(f"{out if out.is_dir() else side} is a folder: --out names the .bin "
                          "file to write")
    if force or not (out.exists() or side.exists()):
        return
    try:
        if out.exists():
            read_token_info(out)  # an lmlab token file, whole, with its own sidecar
        elif json.loads(side.read_text(encoding="utf-8")).get("format") != FORMAT:
            raise DataError(f"{side}: not an lmlab token sidecar")  # (its .bin gone: ours)
    except (DataError, OSError, ValueError, AttributeError):
        what = out if out.exists() else side
        raise ConfigError(f"{what} exists and lmlab tokenizer encode did not write it (no "
                          f"sidecar {side.name} that matches it): choose another --out, or pass "
                          "--force to overwrite it") from None


OLD_NAME_HELP = "Old name of `lmlab tokenizer encode`, which it runs."
app.command("tokenize", hidden=True,
            help=f"{OLD_NAME_HELP}\n\n{inspect.cleandoc(encode.__doc__ or '')}")(encode)


@tokenizer_app.command("export")
def export(
    tokenizer: Annotated[Path, typer.Argument(help=TOKENIZER_DIR_HELP, show_default=False)],
    out: Annotated[Path, typer.Option(
        help="Folder to write tokenizer.json into (a new one, or a tokenizer's: other files in "
        "it need --force).")],
    format: Annotated[TokenizerFormat, typer.Option(
        help="hf: tokenizer.json of the Hugging Face tokenizers library.")] = TokenizerFormat.hf,
    force: Force = False,
) -> None:
    """Write a tokenizer as a Hugging Face tokenizer.json (the same ids).

    `tokenizers.Tokenizer.from_file(OUT/tokenizer.json)` or, with the tokenizer_config.json
    beside it, `AutoTokenizer.from_pretrained(OUT)` loads it.

    \b
    Examples:
      lmlab tokenizer export data/tinystories-2k/tokenizer --out hf/tokenizer
    """
    from lmlab.atomic import atomic_write_json, atomic_write_text
    from lmlab.hf import hf_tokenizer_json, tokenizer_config

    check_folder(out, TOKENIZER_FILES, "lmlab tokenizer export", force)
    loaded = Tokenizer.load(tokenizer)
    atomic_write_text(out / "tokenizer.json", hf_tokenizer_json(loaded) + "\n")
    atomic_write_json(out / "tokenizer_config.json", tokenizer_config(loaded, None))
    typer.echo(f"wrote {out / 'tokenizer.json'} ({loaded.vocab_size:,} tokens)")
