"""Running a planned sweep: point after point in this process, or several at once as
subprocesses (one per GPU when several are visible, else a share of the CPU threads each).

Either way a point's run directory is exactly what ``lmlab train`` writes, and a point that
fails, runs out of memory (``out of memory``) or diverges is a row in the summary, not the end of
the sweep. Sweeps are restartable because runs are: a finished or diverged point is skipped, and
so is a point another live process is training (a second sweep on the same folder); a point not
yet started whose run is already complete elsewhere under the runs folder is copied from it
(:mod:`lmlab.experiments.reuse`); any other starts with ``run.resume=auto`` (from its checkpoint
when it has one). A subprocess runs the documented entry point ``python -m lmlab.training`` on
the point's resolved config, not a composed command line.
"""

import gc
import os
import queue
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from lmlab.atomic import atomic_write_json
from lmlab.errors import OutOfMemory, RunInUseError
from lmlab.experiments.planning import Plan, Point
from lmlab.experiments.reuse import RunIndex, reuse_runs
from lmlab.experiments.rounds import next_round
from lmlab.experiments.summary import summarize, write_summary
from lmlab.training.lock import held_by
from lmlab.training.loop import train
from lmlab.training.rundir import OUT_OF_MEMORY, verdict

DONE = ("finished", "diverged")
"""Statuses a restarted sweep does not run again."""


def run_sweep(plan: Plan, *, parallel: int = 1, reuse: bool = True,
              on_event: Callable[[str], None] = lambda message: None) -> list[dict[str, Any]]:
    """Run every point not already done, ``parallel`` at a time; return the summary rows.
    With ``reuse``, a point whose run is complete elsewhere under the runs folder is copied
    from it instead of trained (:func:`~lmlab.experiments.reuse.reuse_runs`).

    A search runs in rounds, each planned from the last one's finished runs (``plan`` grows
    by them). ``summary.csv`` and ``summary.json`` are written to the sweep folder at the end,
    also when the sweep is interrupted (Ctrl-C stops the runs at a checkpoint; run again to
    continue).
    """
    points = list(plan.points)
    index = RunIndex(plan.root.parent) if reuse else None  # the runs folder, read once
    try:
        while points:  # one round; a search's finished runs decide the next (rounds.py)
            atomic_write_json(plan.root / "sweep.json", plan.describe())
            todo = [point for point in points if _status(point) not in DONE]
            for point in points:
                if point not in todo:
                    on_event(f"{point.name}: {_status(point)}, skipped")
            if index is not None:
                todo = reuse_runs(index, todo, on_event)
            if parallel == 1:
                _run_here(todo, on_event)
            else:
                _run_subprocesses(todo, parallel, on_event)
            points = next_round(plan, on_event)
    finally:  # also after Ctrl-C, which stops the runs at a checkpoint
        rows = summarize(plan)
        write_summary(plan.root, rows)
    return rows


def _status(point: Point) -> str:
    return point.run_dir.status or "pending"


def _outcome(status: str, point: Point) -> str:
    """``status`` as the summary shows it, with the reason when the run diverged or failed:
    ``diverged (train/loss is nan ...)``, ``out of memory (out of GPU memory at batch ...)``."""
    reason = point.run_dir.reason if status in ("diverged", "failed") else None
    shown = verdict(status, reason)
    return f"{shown} ({reason})" if reason else shown


def _run_here(points: Sequence[Point], on_event: Callable[[str], None]) -> None:
    """One run after another in this process (no interpreter start per run); Ctrl-C stops the
    current run at a checkpoint and the sweep with it."""
    for point in points:
        if _in_use(point, on_event):
            continue
        on_event(f"{point.name}: starting")
        try:
            status = train(point.config,
                           say=lambda line, name=point.name: on_event(f"{name}: {line}")).status
            outcome = _outcome(status, point)
        except RunInUseError as exc:  # taken by another sweep since _in_use looked
            status, outcome = "in use", f"{exc}: skipped"
        except OutOfMemory as exc:  # the next point may fit: a smaller batch, a smaller model
            status, outcome = "failed", f"{OUT_OF_MEMORY} ({exc})"
        except Exception as exc:  # one failing point is a row, not the end
            status = outcome = f"failed ({type(exc).__name__}: {exc})"
        gc.collect()  # a failed run's tensors sit in its traceback's cycles: free the device now
        on_event(f"{point.name}: {outcome}")
        if status == "interrupted":
            raise KeyboardInterrupt


def _run_subprocesses(points: Sequence[Point], parallel: int,
                      on_event: Callable[[str], None]) -> None:
    """``parallel`` runs at a time, each in its own process with its own worker environment."""
    slots: queue.SimpleQueue[dict[str, str]] = queue.SimpleQueue()
    for env in worker_envs(parallel):
        slots.put(env)

    def work(point: Point) -> None:
        if _in_use(point, on_event):
            return
        env = slots.get()
        try:
            on_event(f"{point.name}: starting")
            on_event(f"{point.name}: {_train_subprocess(point, env)}")
        finally:
            slots.put(env)

    pool = ThreadPoolExecutor(max_workers=parallel)
    try:
        for future in [pool.submit(work, point) for point in points]:
            future.result()
    finally:  # on Ctrl-C the runs got the signal too and stop at a checkpoint: start no more
        pool.shutdown(wait=True, cancel_futures=True)


def _in_use(point: Point, on_event: Callable[[str], None]) -> bool:
    """Whether another live process (a second sweep on this folder, an `lmlab train`) trains
    the point's run now; if so the sweep skips it, and says so."""
    holder = held_by(point.run_dir.root)
    if holder is not None:
        on_event(f"{point.name}: in use by {holder}, skipped (run the sweep again when it ends)")
    return holder is not None


def _train_subprocess(point: Point, env: Mapping[str, str]) -> str:
    """``python -m lmlab.training`` on the point's config (JSON on stdin), its output appended
    to ``<run>/train.log``; the status it ended with (``failed`` when the process died without
    saying), with the reason when it diverged."""
    run = point.run_dir
    run.root.mkdir(parents=True, exist_ok=True)
    with open(run.log, "a", encoding="utf-8") as log:
        code = subprocess.run([sys.executable, "-m", "lmlab.training"],
                              input=point.config.model_dump_json(), text=True, stdout=log,
                              stderr=subprocess.STDOUT, env=env).returncode
    status = _status(point)
    if code != 0 and status in ("running", "pending", "finished"):
        status = "failed"
    return _outcome(status, point)


def worker_envs(parallel: int) -> list[dict[str, str]]:
    """One environment per worker: its own GPU when several are visible, else a fair share of
    the CPU threads (N runs with all threads each would fight over the cores)."""
    gpus = _visible_gpus()
    envs = []
    for slot in range(parallel):
        env = dict(os.environ)
        if len(gpus) > 1:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        elif parallel > 1 and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
        envs.append(env)
    return envs


def _visible_gpus() -> list[str]:
    """The CUDA device ids this process may use."""
    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]
