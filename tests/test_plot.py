"""`lmlab plot`: one line per run and metric, legends from config differences, diverged runs
marked, runs still going, smoothing, and bad input; figures that show everything tried (every
rate of an lr sweep, every run in a legend that stays inside the figure, no warnings); and
--out that writes over no file lmlab plot did not write."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lmlab.experiments.compare import by_point, varied_keys
from lmlab.experiments.figures import save_figure
from lmlab.experiments.plot import load_runs, plot_learning_rates, plot_runs, smoothed
from lmlab.experiments.stability import edges
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
    legend = figure.legends[0].get_window_extent()
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
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    assert len(labels) == 2 and all("\n" in text for text in labels)
    assert all(len(line) <= 40 for text in labels for line in text.splitlines()
               if " " in line)  # a single path longer than a line stays whole
    assert ax.get_window_extent().width > figure.bbox.width / 3


def _drawn_quietly(figure, out: Path | None = None) -> None:
    """Lay out and draw ``figure`` (and save it to ``out``): matplotlib must warn of nothing."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure.canvas.draw()
        if out is not None:
            save_figure(figure, out)
    assert [str(warning.message) for warning in caught] == []


def _inside(inner, outer) -> bool:
    return (inner.x0 >= outer.x0 - 1 and inner.y0 >= outer.y0 - 1 and inner.x1 <= outer.x1 + 1
            and inner.y1 <= outer.y1 + 1)


def test_every_rate_tried_is_on_the_lr_figure(tmp_path: Path) -> None:
    """Rates at which every seed diverged (0.3, 1.0) or none finished yet (0.1) are drawn at the
    top, inside an x axis that spans every rate tried, not cut off after the last finished one."""
    root = tmp_path / "lr"
    for lr, status in ((1e-3, "finished"), (1e-2, "finished"), (0.1, "running"),
                       (0.3, "diverged"), (1.0, "diverged")):
        fake_run(root, f"lr{lr}", status, [5.0, 4.0, 3.0 + lr, 2.0 + lr], lr_max=lr)
    runs = load_runs([root])
    figure = plot_learning_rates(edges(by_point(runs), varied_keys([r.config for r in runs])))
    _drawn_quietly(figure, tmp_path / "lr.png")
    (ax,) = figure.axes
    marks = {c.get_gid(): sorted(c.get_offsets()[:, 0]) for c in ax.collections if c.get_gid()}
    assert marks == {"diverged": [0.3, 1.0], "unfinished": [pytest.approx(0.1)]}
    low, high = ax.get_xlim()
    assert low < 1e-3 and high > 1.0  # every rate in view, crosses included
    (bars,) = ax.containers  # the finished rates' mean loss with its error bars
    assert list(bars.lines[0].get_xdata()) == [1e-3, 1e-2]


def test_a_legend_of_many_long_labels_stays_inside_the_figure(tmp_path: Path) -> None:
    """Thirty runs of different configs, told apart by long data paths and rates: every one is
    in the legend, the legend lies inside the saved figure, the axes keep their width, and
    matplotlib says nothing."""
    for i in range(30):
        folder = f"{tmp_path}/a-long-folder-name-for-the-data-of-run-{i}/data"
        fake_run(tmp_path / "runs", f"run{i}", "finished" if i % 3 else "diverged",
                 [5.0, 4.0, 3.0 - i / 100, 2.0], lr_max=10 ** (-3 + i / 10),
                 data={"train_path": f"{folder}/train.bin", "valid_path": f"{folder}/valid.bin"})
    for panels in ("same", "separate"):
        figure = plot_runs(load_runs([tmp_path / "runs"]), panels=panels)
        _drawn_quietly(figure, tmp_path / f"{panels}.png")
        (legend,) = figure.legends
        assert len(legend.get_texts()) == 30
        assert _inside(legend.get_window_extent(), figure.bbox)
        for ax in figure.axes:
            assert ax.get_window_extent().width > 2.5 * figure.dpi
            assert _inside(ax.get_window_extent(), figure.bbox)
        with Image.open(tmp_path / f"{panels}.png") as image:  # saved as laid out
            assert image.size[1] == pytest.approx(figure.bbox.height * 90 / figure.dpi, abs=2)


def test_the_cli_prints_no_library_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for i in range(12):
        fake_run(tmp_path / "runs", f"run{i}", "finished", [5.0, 4.0, 3.0], lr_max=1e-3 * (i + 1),
                 warmup_iters=i)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, _, err = cli(capsys, "plot", tmp_path / "runs", "--out", tmp_path / "c.png", "--log")
    assert code == 0 and err == "" and caught == []


def test_a_run_that_logged_nothing_is_in_the_legend(sweep: Path) -> None:
    fake_run(sweep, "d", "running", [], lr_max=3e-2)
    figure = plot_runs(load_runs([sweep]))
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "lr_max=0.03 (running) (nothing logged)" in labels and len(labels) == 4


def test_a_cross_above_the_clipped_axis_is_drawn_on_its_top(sweep: Path) -> None:
    """The diverged run's last finite loss (9.0) is above the axis (clipped at 5.25): its cross
    is moved onto the top edge, not clipped away."""
    figure = plot_runs(load_runs([sweep]), metrics=["train/loss"])
    (ax,) = figure.axes
    (cross,) = [c for c in ax.collections if c.get_gid() == "diverged"]
    assert cross.get_offsets()[0][1] == pytest.approx(ax.get_ylim()[1])
    assert not cross.get_clip_on()


def test_plot_writes_over_its_own_figure_but_not_a_users_file(sweep: Path, tmp_path: Path,
                                                              capsys) -> None:
    mine = tmp_path / "lr.png"
    mine.write_bytes(b"my own figure")
    code, _, err = cli(capsys, "plot", sweep, "--out", mine)
    assert code == 1 and mine.read_bytes() == b"my own figure"
    assert err == (f"error: {mine} exists and lmlab plot did not write it: choose another "
                   "--out, or pass --force to overwrite it\n")
    for suffix in ("png", "svg", "pdf"):
        out = tmp_path / f"curves.{suffix}"
        assert cli(capsys, "plot", sweep, "--out", out)[0] == 0
        assert cli(capsys, "plot", sweep / "a", "--out", out)[0] == 0  # again: its own file
    assert cli(capsys, "plot", sweep, "--out", mine, "--force")[0] == 0
    assert mine.read_bytes().startswith(b"\x89PNG")
    code, _, err = cli(capsys, "plot", sweep, "--out", tmp_path)
    assert code == 1 and "is a folder" in err


def test_a_run_that_diverged_at_once_is_crossed_on_the_top_edge(tmp_path: Path) -> None:
    fake_run(tmp_path, "a", "finished", [5.0, 4.0, 3.0, 2.0], lr_max=1e-3)
    fake_run(tmp_path, "b", "diverged", [float("nan"), float("nan")], lr_max=1.0)
    figure = plot_runs(load_runs([tmp_path]), metrics=["train/loss"])
    _drawn_quietly(figure)
    (ax,) = figure.axes
    (cross,) = [c for c in ax.collections if c.get_gid() == "diverged at once"]
    assert list(cross.get_offsets()[0]) == [2, 0.96]  # its last step, near the top
    assert "lr_max=1 (diverged)" in [t.get_text() for t in figure.legends[0].get_texts()]
