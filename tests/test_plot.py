"""`lmlab plot`: one line per run and metric, legends from config differences, diverged runs
marked, runs still going, smoothing, and bad input."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lmlab.experiments.plot import load_runs, plot_runs, smoothed
from tests.helpers.fake_runs import fake_run
from tests.helpers.lmlab_cli import cli


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    fake_run(root, "a", "finished", [5.0, 4.0, 3.0, 2.5, 2.0, 1.8], lr_max=1e-3)
    fake_run(root, "b", "diverged", [5.0, 4.5, 9.0, float("nan")], lr_max=1e-1)
    fake_run(root, "c", "running", [5.0, 4.2, 3.5], lr_max=3e-3)
    return root


def test_one_line_per_run_and_metric_labelled_by_what_differs(sweep: Path) -> None:
    figure = plot_runs(load_runs([sweep]), x="tokens")
    (ax,) = figure.axes
    lines = ax.get_lines()
    assert len(lines) == 6  # 3 runs x (train, val)
    labels = [line.get_label() for line in lines if not line.get_label().startswith("_")]
    assert labels == ["lr_max=0.001", "lr_max=0.1 (diverged)", "lr_max=0.003 (running)"]
    assert list(lines[0].get_xdata()) == [100, 200, 300, 400, 500, 600]
    assert list(lines[1].get_ydata()) == pytest.approx([4.1, 2.6, 1.9])
    assert len(ax.collections) == 2  # a cross where each diverged curve stopped
    assert ax.get_ylim()[1] == pytest.approx(5.0 * 1.05)  # the blow-up is off the top


def test_separate_panels_smoothing_and_log_scale(sweep: Path) -> None:
    figure = plot_runs(load_runs([sweep / "a", sweep / "c"]), metrics=["train/loss", "val/loss"],
                       panels="separate", smooth=2, log=True, x="wall_time")
    train, val = figure.axes
    assert len(train.get_lines()) == len(val.get_lines()) == 2
    assert list(train.get_lines()[0].get_ydata()) == pytest.approx([4.5, 3.5, 2.75, 2.25, 1.9])
    assert list(val.get_lines()[0].get_ydata()) == pytest.approx([4.1, 2.6, 1.9])  # not smoothed
    assert train.get_yscale() == "log" and train.get_xlabel() == "wall-clock time (s)"


def test_smoothed_is_a_trailing_mean() -> None:
    xs, ys = smoothed([1, 2, 3], [1.0, 2.0, 3.0], 5)  # too short: unchanged
    assert list(ys) == [1.0, 2.0, 3.0]
    _, ys = smoothed(range(10), np.arange(10.0), 3)
    assert list(ys) == pytest.approx([1, 2, 3, 4, 5, 6, 7, 8])


def test_the_cli_writes_a_valid_png(sweep: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "curves.png"
    code, stdout, _ = cli(capsys, "plot", str(sweep), "--out", str(out), "--metric", "val/loss")
    assert code == 0 and f"wrote {out}" in stdout
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100
    svg = tmp_path / "curves.svg"
    assert cli(capsys, "plot", str(sweep / "a"), "--out", str(svg))[0] == 0
    assert svg.read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(("args", "message"), [
    (["missing"], "missing: no such run directory"),
    (["{empty}"], "holds no run directories"),
    (["{sweep}", "--out", "x.jpg"], "x.jpg: the output must end in .png, .svg, .pdf"),
])
def test_bad_input_is_one_line_and_writes_nothing(sweep: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture,
                                                  args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    args = [arg.format(sweep=sweep, empty=tmp_path / "empty") for arg in args]
    default_out = [] if "--out" in args else ["--out", str(tmp_path / "out.png")]
    code, _, err = cli(capsys, "plot", *args, *default_out)
    assert code == 1 and err.startswith("error: ") and message in err
    assert not (tmp_path / "out.png").exists()


def test_an_unknown_metric_is_an_error_that_lists_the_logged_ones(sweep: Path, tmp_path: Path,
                                                                  capsys) -> None:
    out = tmp_path / "acc.png"
    code, _, err = cli(capsys, "plot", sweep, "--metric", "val/acc", "--out", out)
    assert code == 1 and not out.exists()
    assert err == "error: no run logged val/acc: the runs have train/loss, val/loss\n"


def test_the_y_axis_is_labelled_and_the_legend_sits_beside_the_curves(sweep: Path) -> None:
    figure = plot_runs(load_runs([sweep]))
    figure.canvas.draw()  # the constrained layout places the legend
    (ax,) = figure.axes
    assert ax.get_ylabel() == "loss (nats per token)"
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the axes: it covers no curve


def test_long_labels_wrap_and_leave_room_for_the_axes(tmp_path: Path) -> None:
    """Two quickstart runs differ in their data paths: a one-line legend that long would leave
    the axes no width (matplotlib warns and draws them squashed)."""
    for name in ("first", "second"):
        folder = f"{tmp_path}/quickstart-with-a-long-name-{name}/data"
        fake_run(tmp_path, name, "finished", [5.0, 4.0, 3.0, 2.0],
                 data={"train_path": f"{folder}/train.bin", "valid_path": f"{folder}/valid.bin"})
    figure = plot_runs(load_runs([tmp_path / "first", tmp_path / "second"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied" is a UserWarning
        figure.canvas.draw()
    (ax,) = figure.axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 2 and all("\n" in text for text in labels)
    assert all(len(line) <= 40 for text in labels for line in text.splitlines()
               if " " in line)  # a single path longer than a line stays whole
    assert ax.get_window_extent().width > figure.bbox.width / 3
