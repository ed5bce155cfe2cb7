"""bench/gpu_check.sh must be ready for the day a GPU is lent: valid bash, and on a machine
without CUDA a clear skip that still runs its CPU-safe part and exits 0."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"


def test_gpu_check_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real check")
def test_gpu_check_without_cuda_says_so_and_estimates(tmp_path):
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "WORK": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "no CUDA device: skipping the GPU parts" in result.stdout
    assert "FLOPs per token" in result.stdout  # lmlab estimate of the 17M model ran


def test_the_batch_probe_step_is_a_gpu_part_and_its_script_imports():
    """The probe needs CUDA: it comes after the skip, and its script at least imports here."""
    text = SCRIPT.read_text(encoding="utf-8")
    assert text.index("exit 0") < text.index("python bench/batch_probe_check.py")
    probe = SCRIPT.parent / "batch_probe_check.py"
    result = subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(probe)!r})"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
