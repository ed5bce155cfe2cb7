"""Figures of lmlab's own, from the first line to the file: a figure on an Agg canvas, its one
legend placed where it covers nothing and held inside the figure however long, and the file
written with its maker in its metadata, so that a command knows the files it may write over
(``lmlab plot`` its own figures; ``lmlab report`` the files it listed in :data:`MANIFEST`).

Kept apart from what the figures show (:mod:`lmlab.experiments.plot`): the report and ``lmlab
plot`` save through here alike.
"""

import hashlib
import json
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lmlab.atomic import atomic_path, atomic_write_json
from lmlab.errors import ConfigError

FORMATS = ("png", "svg", "pdf")
LEGEND_WIDTH = 40
"""Characters per legend line: runs told apart by long values (two quickstart runs differ in
their data paths) would otherwise push the axes off a 5.5-inch figure."""
LEGEND_COLUMN_HEIGHT = 7.6
"""Inches of legend beside the axes at most: a longer one goes below them, in columns, rather
than make a figure many times taller than wide."""
PLOT = "lmlab plot"
"""The maker :func:`save_figure` writes into a figure's metadata unless told another."""
MANIFEST = ".lmlab-report.json"
"""Beside a report: ``{"files": {name: {"report": the .md that wrote it, "sha256": ...}}}``."""
HEAD_BYTES = 1 << 16
"""How much of each end of a file :func:`written_by` reads (a PDF's metadata is at its end)."""


def new_figure(width: float) -> Figure:
    """A figure ``width`` inches wide with the constrained layout, on an Agg canvas (no GUI), so
    that its legend can be measured before it is drawn."""
    figure = Figure(figsize=(width, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_title(figure: Figure, title: str | None) -> None:
    """The figure's title (none when ``title`` is empty) at its left edge, where the legend
    beside the axes, at the upper right, never covers it."""
    if title:
        figure.suptitle(title, x=0.01, ha="left")


def legend_beside(figure: Figure, panels: int) -> None:
    """One legend for the figure (the entries of every panel, once each), where it never covers
    a curve, its labels wrapped at :data:`LEGEND_WIDTH` characters: right of the axes, or below
    them in columns (as many as the width holds, or as keep each under
    :data:`LEGEND_COLUMN_HEIGHT`) when one column would be taller. The figure grows to hold it
    beside axes about 3 inches wide each; the constrained layout then places it."""
    entries: dict[str, object] = {}
    for ax in figure.axes:
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(textwrap.fill(text, LEGEND_WIDTH), handle)
    if not entries:
        return
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    legend = figure.legend(entries.values(), entries, fontsize=7, loc="outside right upper")
    box = legend.get_window_extent(renderer)
    width, height = figure.get_size_inches()
    if box.height / figure.dpi <= LEGEND_COLUMN_HEIGHT:
        figure.set_size_inches(max(width, 4 * panels + box.width / figure.dpi + 0.3),
                               max(height, box.height / figure.dpi + 0.5))
        return
    legend.remove()
    columns = max(int(width // (box.width / figure.dpi + 0.2)),
                  math.ceil(box.height / figure.dpi / LEGEND_COLUMN_HEIGHT))
    legend = figure.legend(entries.values(), entries, fontsize=7, loc="outside lower center",
                           ncols=columns)
    box = legend.get_window_extent(renderer)
    figure.set_size_inches(max(width, box.width / figure.dpi + 0.3),
                           height + box.height / figure.dpi + 0.2)


def save_figure(figure: Figure, out: str | Path, dpi: int = 90, *, maker: str = PLOT) -> Path:
    """Write ``figure`` to ``out`` (``.png``, ``.svg`` or ``.pdf``) atomically, with ``maker``
    as its creator in the file's metadata (what :func:`written_by` looks for)."""
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ConfigError(f"{out}: the output must end in {', '.join('.' + f for f in FORMATS)}")
    metadata = {"Software" if fmt == "png" else "Creator": maker}
    with atomic_path(out) as tmp:
        figure.savefig(tmp, format=fmt, dpi=dpi, metadata=metadata)
    return out


def written_by(path: str | Path, maker: str = PLOT) -> bool:
    """Whether the file at ``path`` is a figure :func:`save_figure` wrote for ``maker`` (its name
    in the file's metadata)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
            f.seek(max(0, path.stat().st_size - HEAD_BYTES))
            tail = f.read()
    except OSError:
        return False
    return maker.encode() in head or maker.encode() in tail


def check_out(out: str | Path, force: bool = False) -> None:
    """Refuse a folder, or a file that ``lmlab plot`` did not write (unless ``force``), as the
    figure ``out``: a user's own ``lr.png`` is never replaced, and plotting again still works."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out} is a folder: --out names the figure file to write")
    if out.exists() and not force and not written_by(out, PLOT):
        raise ConfigError(f"{out} exists and lmlab plot did not write it: choose another --out, "
                          "or pass --force to overwrite it")


def check_overwrite(out: Path, files: Sequence[Path], force: bool) -> None:
    """Refuse to write ``files`` for the report ``out`` over a file that it did not write (one
    :data:`MANIFEST` does not list for it), or that was changed since it did, unless ``force``:
    running a report again writes over its own files, never a user's ``lr.png`` beside it."""
    made = _manifest(out.parent)
    for path in files:
        if force or not path.exists():
            continue
        entry = made.get(path.name, {})
        if entry.get("report") == out.name and entry.get("sha256") == _sha256(path):
            continue
        why = ("lmlab report did not write it" if not entry
               else f"it belongs to the report {out.parent / str(entry.get('report'))}"
               if entry.get("report") != out.name else "it was changed since lmlab report wrote it")
        raise ConfigError(f"{path} exists and {why}: choose another --out, or pass --force to "
                          "overwrite it")


def _manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The files reports wrote in ``folder`` (none when there is no readable manifest)."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {name: entry for name, entry in files.items() if isinstance(entry, dict)}


def record_written(out: Path, files: Sequence[Path]) -> None:
    """Add ``files`` (just written by the report ``out``) to the manifest beside it."""
    made = _manifest(out.parent)
    made.update({path.name: {"report": out.name, "sha256": _sha256(path)} for path in files})
    atomic_write_json(out.parent / MANIFEST, {
        "about": "files lmlab report wrote here: a report writes over these alone (or --force)",
        "files": dict(sorted(made.items()))})


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
