"""Which precision a run computes in: ``train.dtype`` and Muon's ``optim.muon_dtype`` take
bfloat16 only where they are told to, or (``native``, ``auto`` for Muon) where the hardware has
bfloat16 matmuls, which on a CPU means AMX or AVX-512 BF16 (emulated elsewhere, many times
slower). And whether ``torch.compile`` can build kernels here: a CPU needs a C++ compiler."""

import sys
from pathlib import Path

import pytest
import torch
from torch._inductor import config as inductor

from lmlab.config import load_config
from lmlab.device import missing_compiler, resolve_dtype, resolve_matmul_dtype
from lmlab.training.loop import train
from tests.helpers.tiny_runs import tiny_run

CPU = torch.device("cpu")
HARDWARE = [(True, False, True), (False, True, True), (False, False, False)]  # amx, avx512_bf16


def _cpu_has(monkeypatch, amx: bool, avx512_bf16: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16,
                        raising=False)


@pytest.mark.parametrize(("amx", "avx512_bf16", "native"), HARDWARE)
def test_train_dtype_native_is_bfloat16_only_on_a_cpu_that_has_it(monkeypatch, amx, avx512_bf16,
                                                                  native):
    _cpu_has(monkeypatch, amx, avx512_bf16)
    assert resolve_dtype("native", CPU) == (torch.bfloat16 if native else None)
    assert resolve_dtype("auto", CPU) is None  # auto keeps a CPU run in float32 everywhere
    assert resolve_dtype("float32", CPU) is None
    assert resolve_dtype("bfloat16", CPU) == torch.bfloat16


@pytest.mark.parametrize(("amx", "avx512_bf16", "native"), HARDWARE)
def test_muon_precision_is_bfloat16_only_where_it_is_native(monkeypatch, amx, avx512_bf16,
                                                            native):
    _cpu_has(monkeypatch, amx, avx512_bf16)
    assert resolve_matmul_dtype("auto", CPU) == (torch.bfloat16 if native else torch.float32)
    assert resolve_matmul_dtype("float32", CPU) == torch.float32
    assert resolve_matmul_dtype("bfloat16", CPU) == torch.bfloat16


def test_without_the_probes_or_off_cpus_and_gpus_it_stays_float32(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert resolve_matmul_dtype("auto", CPU) == torch.float32
    assert resolve_dtype("native", CPU) is None
    mps = torch.device("mps")
    assert resolve_matmul_dtype("auto", mps) == torch.float32
    assert resolve_dtype("native", mps) is None


def test_a_cpu_without_a_cxx_compiler_cannot_compile(without_cxx):
    assert f"no C++ compiler ({without_cxx}) on PATH" in missing_compiler(CPU)
    assert missing_compiler(torch.device("cuda")) is None  # GPUs compile through Triton
    with inductor.patch({"cpp.cxx": (None, sys.executable)}):  # any program on the path
        assert missing_compiler(CPU) is None


def test_train_compile_without_a_compiler_warns_and_trains_uncompiled(tmp_path: Path,
                                                                      without_cxx):
    """A preset that asks for torch.compile still runs on a slim image with no g++."""
    notes: list[str] = []
    config = load_config(None, tiny_run(tmp_path, "train.compile=true", "train.max_steps=3",
                                        "optim.warmup_iters=1"))
    result = train(config, say=notes.append)
    assert result.status == "finished"
    assert notes == [f"warning: train.compile=true, but no C++ compiler ({without_cxx}) "
                     "on PATH, which torch.compile needs on a CPU: training without it"]
