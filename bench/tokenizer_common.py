"""Helpers shared by the tokenizer benchmarks: data files, the machine, peak memory of a run.

``ru_maxrss`` reports the largest single process, but a parallel tokenizer's footprint is the sum
of the parent and its workers at the same moment, so :func:`run_child` samples the RSS of the
whole process tree instead (pages shared by forked workers count once per process: an upper
bound).
"""

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLES = [DATA / "tinystories" / "train.txt", DATA / "owt" / "train.txt"]


def concatenated(src: Path, times: int, folder: Path) -> Path:
    """``src`` repeated ``times`` times, as ``folder/<data set>-x<times>.txt``."""
    out = folder / f"{src.parent.name}-x{times}.txt"
    out.write_bytes(src.read_bytes() * times)
    return out


def label(path: Path) -> str:
    """``tinystories/train.txt`` for a shared file, the bare name for a temporary one."""
    return f"{path.parent.name}/{path.name}" if path.is_relative_to(DATA) else path.name


def run_child(args: list[str], interval_s: float = 0.01) -> tuple[dict, float, int]:
    """Run ``python <args>``, which must print one JSON object; return it, wall s, peak bytes."""
    start = time.perf_counter()
    proc = psutil.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(_rss(p) for p in tree))
        except psutil.NoSuchProcess:
            pass
        time.sleep(interval_s)
    wall = time.perf_counter() - start
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{args} exited with {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1]), wall, peak


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.NoSuchProcess:
        return 0


def describe_machine() -> str:
    """e.g. ``x86_64, 2 cores, Python 3.11.9``."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
