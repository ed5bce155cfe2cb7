"""`lmlab data download`: the CLI over :func:`lmlab.datasets.download`."""

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from lmlab.cli.app import app
from lmlab.datasets import DATASETS, download

data_app = typer.Typer(help="""Get pretraining text.

\b
Examples:
  lmlab data download tinystories
""", no_args_is_help=True)
app.add_typer(data_app, name="data")

DatasetName = StrEnum("DatasetName", {name: name for name in DATASETS})


@data_app.command("download")
def download_command(
    name: Annotated[DatasetName, typer.Argument(
        help="tinystories: TinyStoriesV2-GPT4 (2.2 GB train, 22 MB valid); owt: the CS336 "
        "OpenWebText sample (11 GB train, 290 MB valid).", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        help="Folder for train.txt and valid.txt (default: data/<name>).", show_default=False)
    ] = None,
) -> None:
    """Download a dataset's train.txt and valid.txt from the Hub.

    Files already there are kept. Honours HF_ENDPOINT and HF_HUB_OFFLINE; without network it
    fails in seconds.

    \b
    Examples:
      lmlab data download tinystories
      lmlab data download owt --out /data/owt
    """
    paths = download(name.value, out or Path("data") / name.value)
    for split, path in paths.items():
        typer.echo(f"{split}: {path} ({path.stat().st_size:,} bytes)")
