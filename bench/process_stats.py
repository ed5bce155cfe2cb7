"""Run a command and measure its wall time and the peak memory of its whole process tree.

``ru_maxrss`` reports the largest single process, but a parallel tokenizer's footprint is the sum
of the parent and its workers at the same moment, so the tree's RSS is sampled instead (shared
pages of forked workers are counted once per process: an upper bound).
"""

import json
import os
import platform
import subprocess
import sys
import time

import psutil


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
