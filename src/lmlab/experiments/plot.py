"""Learning curves: the metrics of many runs overlaid in one matplotlib figure.

Each run keeps one colour across panels and is labelled by what sets it apart (the config keys
whose values differ between the runs plotted), so a sweep's plot reads as its grid. A diverged run
ends in a cross, and the loss axes stop a little above where training started, so one blow-up does
not flatten every other curve. Runs still going are plotted as far as they got.

Every run plotted is in the legend (one that logged nothing too), every rate of an lr sweep on its
figure (one at which no seed finished too), and the figure grows to hold its legend.

The figure is built with :class:`matplotlib.figure.Figure` directly, not pyplot: no GUI backend,
no global figure state, and the caller (or a test) gets the Figure to save or inspect
(:mod:`lmlab.experiments.figures` saves it).
"""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lmlab.errors import ConfigError, DataError
from lmlab.experiments.compare import SEED, by_point, label, point_label, varied_keys
from lmlab.experiments.figures import figure_title, legend_beside, new_figure
from lmlab.experiments.stability import Edge
from lmlab.training.rundir import X_KEYS, Run, RunDir, find_runs

X_LABELS = {"step": "step", "tokens": "tokens", "wall_time": "wall-clock time (s)"}
DEFAULT_METRICS = ("train/loss", "val/loss")


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Runs from run directories or folders of them (a sweep), in the order given."""
    runs: list[Run] = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path}: no such run directory")
        found = [path] if RunDir(path).config.is_file() else find_runs(path)
        if not found:
            raise DataError(f"{path} holds no run directories (folders with config.json)")
        runs.extend(Run.load(run) for run in found)
    return runs


def plot_runs(
    runs: Sequence[Run],
    *,
    x: str = "step",
    metrics: Sequence[str] = DEFAULT_METRICS,
    log: bool = False,
    smooth: int = 1,
    panels: Literal["same", "separate"] = "same",
    title: str | None = None,
) -> Figure:
    """A figure of ``metrics`` against ``x`` (step, tokens or wall_time) for every run.

    The seeds of one point (runs that differ only in ``train.seed``) are drawn as their mean
    curve in a band from the lowest to the highest seed; a seed that diverged keeps its own
    curve and cross. ``panels="same"`` draws all metrics on one axes (the first metric dashed
    and faint, the last solid), ``"separate"`` gives each metric its own. ``smooth`` is the
    width of a trailing moving average of the ``train/`` metrics (evaluations are already
    averages over the whole validation set, and too far apart to average together); ``log``
    puts the y axis on a log scale.
    """
    if x not in X_KEYS:
        raise ConfigError(f"x must be one of {', '.join(X_KEYS)}, got {x!r}")
    if smooth < 1:
        raise ConfigError(f"smooth must be >= 1, got {smooth}")
    if not metrics:
        raise ConfigError("give at least one metric, e.g. val/loss")
    logged = sorted({key for run in runs for record in run.records for key in record
                     if "/" in key})
    missing = [metric for metric in metrics if metric not in logged]
    if logged and missing:  # (runs that have logged nothing yet still plot, empty)
        raise ConfigError(f"no run logged {', '.join(missing)}: the runs have "
                          f"{', '.join(logged)}")
    points = by_point(runs)
    keys = [key for key in varied_keys([run.config for run in runs])
            if not (key == SEED and any(len(point) > 1 for point in points))]
    groups = [list(metrics)] if panels == "same" else [[metric] for metric in metrics]
    figure = new_figure(5.5 * len(groups))
    axes = figure.subplots(1, len(groups), squeeze=False)[0]
    for ax, group in zip(axes, groups, strict=True):
        for colour, point in enumerate(points):
            name: str | None = _legend(point, keys)
            for metric in group:
                if _draw_point(ax, point, metric, x, smooth, f"C{colour % 10}", name,
                               faint=len(group) > 1 and metric != group[-1]):
                    name = None  # one legend entry per point and panel
            if name is not None:  # nothing to draw yet: still in the legend
                ax.plot([], [], color=f"C{colour % 10}", label=f"{name} (nothing logged)")
        _finish(ax, runs, group, x, log)
    figure_title(figure, title)
    legend_beside(figure, len(axes))
    return figure


def plot_learning_rates(edges: Sequence[Edge], title: str | None = None) -> Figure:
    """Final validation loss against the peak learning rate (log axis), one line per series of
    an lr sweep: the mean over seeds with the standard deviation as error bars, the best rate
    ringed, and every rate tried on the x axis: one at which a seed diverged crossed along the
    top, one with no final loss otherwise (still running, failed) a hollow circle there.
    The top row is in axes coordinates, which matplotlib leaves out of its limits, so the x axis
    is set to span every rate."""
    figure = new_figure(5.5)
    ax = figure.subplots()
    top = ax.get_xaxis_transform()  # x in data, y in axes fractions
    unfinished_seen = False
    for index, edge in enumerate(edges):
        colour = f"C{index % 10}"
        scored = [(lr, row) for lr, row in edge.rates if row["final_val_loss"] is not None]
        ax.errorbar([lr for lr, _ in scored], [row["final_val_loss"] for _, row in scored],
                    yerr=[row["final_val_loss_std"] or 0.0 for _, row in scored], color=colour,
                    marker="o", markersize=4, capsize=3, label=edge.series or "final val loss")
        if edge.best is not None:
            lr, row = edge.best
            ax.scatter([lr], [row["final_val_loss"]], s=160, facecolors="none",
                       edgecolors=colour, linewidths=1.5, zorder=3)
        diverged = [lr for lr, row in edge.rates if "diverged" in row["status"]]
        ax.scatter(diverged, [0.96] * len(diverged), transform=top, marker="x", s=60,
                   color=colour, zorder=3, clip_on=False, gid="diverged")
        unfinished = [lr for lr, row in edge.rates
                      if row["final_val_loss"] is None and "diverged" not in row["status"]]
        unfinished_seen |= bool(unfinished)
        ax.scatter(unfinished, [0.96] * len(unfinished), transform=top, marker="o", s=40,
                   facecolors="none", edgecolors=colour, zorder=3, clip_on=False,
                   gid="unfinished")
    ax.set_xscale("log")
    rates = [lr for edge in edges for lr, _ in edge.rates if lr > 0]
    if rates:
        ax.set_xlim(*_log_span(min(rates), max(rates)))
    if any(c.get_gid() and len(c.get_offsets()) for c in ax.collections):  # room for the top row
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.1 * (high - low))
    ax.set_xlabel("peak learning rate (optim.lr_max)")
    ax.set_ylabel("final val loss")
    ax.set_title("best rate ringed, diverged rates crossed (top)"
                 + (",\nrates with no final val loss hollow (top)" if unfinished_seen else ""),
                 fontsize=10)
    ax.grid(alpha=0.3)
    figure_title(figure, title)
    legend_beside(figure, 1)
    return figure


def plot_edges(edges: Sequence[Edge], key: str, title: str | None = None) -> Figure:
    """The best rate and the smallest diverging rate of each series against the value of
    ``key`` that sets the series apart (``train.batch_size``), both axes on a log scale: the
    best a filled circle (hollow when it lies at the edge of the search), the smallest diverging
    rate a cross, the span between them a line."""
    figure = new_figure(5.5)
    ax = figure.subplots()
    rows = sorted(((edge.values[key], edge) for edge in edges), key=lambda item: item[0])
    best = [(x, edge.best[0], edge.at_edge_of_search) for x, edge in rows if edge.best]
    diverging = [(x, edge.diverging) for x, edge in rows if edge.diverging is not None]
    for hollow in (False, True):  # the legend names only what is drawn
        shown = [(x, lr) for x, lr, at_edge in best if bool(at_edge) == hollow]
        if shown:
            ax.scatter([x for x, _ in shown], [lr for _, lr in shown], s=50, color="C0",
                       facecolors="none" if hollow else "C0", zorder=3,
                       label="best rate" + (" (at the edge of the search)" if hollow else ""))
    if diverging:
        ax.plot([x for x, _ in diverging], [lr for _, lr in diverging], color="C3", marker="x",
                markersize=8, linestyle=":", label="smallest diverging rate")
    else:
        ax.text(0.02, 0.98, "no rate diverged in this search", transform=ax.transAxes,
                va="top", fontsize=9, color="C3")
    ax.plot([x for x, _, _ in best], [lr for _, lr, _ in best], color="C0", alpha=0.5)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel("peak learning rate (optim.lr_max)")
    ax.set_title("best and smallest diverging rate per series", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    figure_title(figure, title)
    legend_beside(figure, 1)
    return figure


def smoothed(xs: Sequence[float], ys: Sequence[float], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing moving average of width ``k`` (the first ``k - 1`` points have no full window).

    >>> smoothed([1, 2, 3, 4], [0.0, 2.0, 4.0, 6.0], 2)
    (array([2, 3, 4]), array([1., 3., 5.]))
    """
    xs, ys = np.asarray(xs), np.asarray(ys, dtype=float)
    if k <= 1 or len(ys) < k:
        return xs, ys
    return xs[k - 1:], np.convolve(ys, np.ones(k) / k, mode="valid")


def _legend(point: Sequence[Run], keys: Sequence[str]) -> str:
    """The point by its differing values (its name when nothing differs), its seeds, and its
    state when not finished."""
    text = label(point[0].config, keys) if keys else point_label(point)
    if len(point) > 1:
        text += f" ({len(point)} seeds)"
    statuses = {run.status for run in point}
    return text if statuses == {"finished"} else f"{text} ({', '.join(sorted(statuses))})"


def _draw_point(ax: Axes, point: Sequence[Run], metric: str, x: str, smooth: int, colour: str,
                name: str | None, faint: bool) -> bool:
    """One point's curve of one metric: a run's own curve, or over seeds their mean in a
    min-max band (up to the shortest seed's last value); diverged seeds apart, with their
    cross. Whether a curve took ``name`` as its label."""
    width = smooth if metric.startswith("train/") else 1
    trained = [run for run in point if run.status != "diverged"]
    if len(point) == 1 or not trained:  # nothing to average
        labelled = False
        for run in point:
            labelled |= _draw(ax, run, metric, x, width, colour, None if labelled else name,
                              faint)
        return labelled
    for run in point:
        if run.status == "diverged":
            _draw(ax, run, metric, x, width, colour, None, faint=True)
    series = [smoothed(*run.series(metric, x), width) for run in trained]
    length = min(len(ys) for _, ys in series)
    if length == 0:  # a seed has logged nothing yet: the point is in the legend all the same
        ax.plot([], [], color=colour, label=name)
        return True
    xs = np.mean([xs[:length] for xs, _ in series], axis=0)
    ys = np.stack([ys[:length] for _, ys in series])
    ax.plot(xs, ys.mean(axis=0), color=colour, label=name, linestyle="--" if faint else "-",
            alpha=0.5 if faint else 1.0, linewidth=1.2,
            marker="o" if length < 30 and not faint else None, markersize=3)
    ax.fill_between(xs, ys.min(axis=0), ys.max(axis=0), color=colour, alpha=0.1 if faint else 0.2,
                    linewidth=0)
    return True


def _draw(ax: Axes, run: Run, metric: str, x: str, width: int, colour: str, name: str | None,
          faint: bool) -> bool:
    """One run's curve of one metric, smoothed over ``width`` points; a cross where a diverged
    run stopped. Whether there was a curve to draw (and label)."""
    xs, ys = smoothed(*run.series(metric, x), width)
    if len(ys) == 0:
        return False
    ax.plot(xs, ys, color=colour, label=name, linestyle="--" if faint else "-",
            alpha=0.5 if faint else 1.0, linewidth=1.2,
            marker="o" if len(ys) < 30 and not faint else None, markersize=3)
    finite = np.flatnonzero(np.isfinite(ys))
    if run.status == "diverged" and len(finite):
        ax.scatter([xs[finite[-1]]], [ys[finite[-1]]], color=colour, marker="x", s=60, zorder=3,
                   gid="diverged")
    elif run.status == "diverged":  # not one finite value: its cross on the top edge
        ax.scatter([xs[-1]], [0.96], transform=ax.get_xaxis_transform(), color=colour,
                   marker="x", s=60, zorder=3, clip_on=False, gid="diverged at once")
    return True


def _finish(ax: Axes, runs: Sequence[Run], metrics: Sequence[str], x: str, log: bool) -> None:
    """Labels and scale; a loss axis clipped a little above its starting values, with the
    crosses of runs that diverged above it drawn on its top edge (not clipped away)."""
    styles = " (dashed), ".join(metrics) if len(metrics) > 1 else metrics[0]
    ax.set_title(styles, fontsize=10)
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(_y_label(metrics))
    ax.grid(alpha=0.3)
    if log:
        ax.set_yscale("log")
    if any(run.status == "diverged" for run in runs) and all("loss" in m for m in metrics):
        starts = [ys[0] for run in runs for m in metrics for ys in [run.series(m, x)[1]]
                  if ys and math.isfinite(ys[0])]
        if starts:
            ax.set_ylim(top=max(starts) * 1.05)
            _clamp_crosses(ax, max(starts) * 1.05)


def _y_label(metrics: Sequence[str]) -> str:
    """``loss (nats per token)`` for losses, else the metric names."""
    if all(metric.endswith("/loss") for metric in metrics):
        return "loss (nats per token)"
    if all(metric.endswith("/bpb") for metric in metrics):
        return "bits per byte"
    return ", ".join(metrics)


def _clamp_crosses(ax: Axes, top: float) -> None:
    """Move the crosses of diverged runs that lie above ``top`` onto it, drawn unclipped."""
    for collection in ax.collections:
        offsets = np.array(collection.get_offsets(), dtype=float)
        if collection.get_gid() == "diverged" and (offsets[:, 1] > top).any():
            offsets[:, 1] = np.minimum(offsets[:, 1], top)
            collection.set_offsets(offsets)
            collection.set_clip_on(False)


def _log_span(low: float, high: float) -> tuple[float, float]:
    """Limits of a log axis that show ``low`` and ``high`` with a margin.

    >>> [round(limit, 5) for limit in _log_span(1e-3, 1e-1)]
    [0.00063, 0.15849]
    """
    margin = 0.1 * math.log10(high / low) or 0.5
    return low / 10 ** margin, high * 10 ** margin
