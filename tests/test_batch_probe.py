"""train.batch_size = "auto" and train.grad_accum = "auto": the search for the largest batch that
fits, the choice a run records and a resume reuses, and the CUDA probe where a GPU is."""

import doctest
import math
from pathlib import Path

import pytest
import torch

from lmlab.compute import MEMORY_HEADROOM, estimate
from lmlab.config import load_config
from lmlab.errors import ConfigError
from lmlab.training import batch_probe
from lmlab.training.batch_probe import (
    cuda_fits,
    fit_batch,
    largest_divisor,
    largest_fitting,
    with_saved_batch,
)
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from tests.helpers.tiny_runs import losses, tiny_run


@pytest.mark.parametrize("limit", [1, 7, 64, 100, 4096])
def test_the_search_finds_the_largest_fitting_batch_in_few_tries(limit: int) -> None:
    for largest in [0, 1, 2, 3, 12, 63, 64, 65, 99, 100, 1000, 5000]:
        tried: list[int] = []

        def fits(batch: int, largest=largest, tried=tried) -> bool:
            assert 1 <= batch <= limit
            tried.append(batch)
            return batch <= largest

        assert largest_fitting(fits, limit) == min(largest, limit)
        assert len(tried) <= 2 * math.ceil(math.log2(limit + 1)) + 1


def test_a_step_s_batch_is_split_into_even_micro_batches() -> None:
    assert [largest_divisor(512, most) for most in (1, 3, 100, 512, 4096)] == [1, 2, 64, 512, 512]
    assert largest_divisor(12, 5) == 4 and largest_divisor(7, 6) == 1


def _memory_for(words: list[str], batch: int) -> float:
    """A machine memory in which the estimate fits ``batch`` sequences and not one more."""
    config = load_config(None, words)
    low = estimate(config, batch=batch, precision="float32").memory_bytes
    high = estimate(config, batch=batch + 1, precision="float32").memory_bytes
    return (low + high) / 2 / (1 - MEMORY_HEADROOM)


@pytest.mark.slow
def test_auto_on_a_cpu_trains_at_the_largest_batch_that_fits_and_records_it(
        tmp_path: Path, monkeypatch) -> None:
    words = tiny_run(tmp_path, "train.batch_size=auto", "train.grad_accum=2",
                     "train.max_steps=6", "train.ckpt_interval=3", "train.eval_interval=0")
    monkeypatch.setattr(batch_probe, "machine_memory",
                        lambda kind: (_memory_for(words, 5), "an injected limit"))
    said: list[str] = []
    result = train(load_config(None, words), say=said.append)
    saved = RunDir(result.run_dir).read_config()["train"]
    assert (saved["batch_size"], saved["grad_accum"]) == (5, 2)
    assert result.tokens == 6 * 5 * 2 * 16
    assert any(line.startswith("batch: 5 sequences a micro-batch x 2 accumulated = 10 a step, "
                               "the largest that fits with 10% of the memory kept free "
                               "(lmlab estimate's memory against an injected limit")
               for line in said)

    # a resume keeps the choice, whatever fits now
    monkeypatch.setattr(batch_probe, "machine_memory",
                        lambda kind: (_memory_for(words, 2), "an injected limit"))
    said.clear()
    resumed = train(load_config(None, [*words, "train.max_steps=9", "run.resume=auto"]),
                    say=said.append)
    saved = RunDir(resumed.run_dir).read_config()["train"]
    assert (saved["batch_size"], saved["grad_accum"], resumed.step) == (5, 2, 9)
    assert "batch: 5 sequences a micro-batch x 2 accumulated = 10 a step, as the checkpoint's " \
           "run chose" in said


@pytest.mark.slow
def test_auto_grad_accum_keeps_the_step_s_batch(tmp_path: Path, monkeypatch) -> None:
    """batch_size=8 with grad_accum=auto where 3 fit: 4 micro-batches of 2, the same windows
    and (to rounding) the same losses as one batch of 8."""
    words = tiny_run(tmp_path, "train.batch_size=8", "train.max_steps=5", "train.eval_interval=0",
                     "optim.warmup_iters=1")
    monkeypatch.setattr(batch_probe, "machine_memory",
                        lambda kind: (_memory_for(words, 3), "an injected limit"))
    split = train(load_config(None, [*words, "train.grad_accum=auto", "run.name=split"]))
    whole = train(load_config(None, [*words, "run.name=whole"]))
    saved = RunDir(split.run_dir).read_config()["train"]
    assert (saved["batch_size"], saved["grad_accum"]) == (2, 4)
    assert split.tokens == whole.tokens == 5 * 8 * 16
    split_losses, whole_losses = losses(split.run_dir), losses(whole.run_dir)
    assert split_losses.keys() == whole_losses.keys()
    for step, loss in whole_losses.items():
        assert split_losses[step] == pytest.approx(loss, rel=1e-4)


def test_an_injected_probe_and_the_errors(tmp_path: Path) -> None:
    config = load_config(None, tiny_run(tmp_path, "train.batch_size=auto"))
    cpu = torch.device("cpu")
    chosen = fit_batch(config, cpu, fits=lambda batch: batch <= 12)
    assert (chosen.train.batch_size, chosen.train.grad_accum) == (12, 1)
    with pytest.raises(ConfigError, match="not even one sequence of 16 tokens fits"):
        fit_batch(config, cpu, fits=lambda batch: False)
    with pytest.raises(ConfigError, match="choose on one GPU"):
        fit_batch(config, cpu, world_size=2)
    both = load_config(None, tiny_run(tmp_path, "train.batch_size=auto", "train.grad_accum=auto"))
    with pytest.raises(ConfigError, match="leave the global batch open"):
        fit_batch(both, cpu)
    plain = load_config(None, tiny_run(tmp_path))
    assert fit_batch(plain, cpu, fits=lambda batch: False) is plain


def test_a_saved_batch_stands_in_for_auto_only_where_auto_could_choose_it(tmp_path) -> None:
    auto = load_config(None, tiny_run(tmp_path, "train.batch_size=auto", "train.grad_accum=2"))
    assert with_saved_batch(auto, {"batch_size": 7, "grad_accum": 2}).train.batch_size == 7
    assert with_saved_batch(auto, {"batch_size": 7, "grad_accum": 3}) is auto
    step = load_config(None, tiny_run(tmp_path, "train.batch_size=8", "train.grad_accum=auto"))
    assert with_saved_batch(step, {"batch_size": 2, "grad_accum": 4}).train.grad_accum == 4
    assert with_saved_batch(step, {"batch_size": 2, "grad_accum": 2}) is step


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_cuda_probe_runs_a_step_and_survives_out_of_memory(tmp_path: Path) -> None:
    config = load_config(None, tiny_run(tmp_path, "train.device=cuda", "model.vocab_size=32000"))
    fits = cuda_fits(config, torch.device("cuda"))
    assert fits(1) and not fits(10_000_000)  # the second runs out of memory
    assert fits(2)  # and the memory was freed


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(batch_probe).failed == 0
