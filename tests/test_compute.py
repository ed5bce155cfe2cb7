"""What a run costs: `lmlab estimate` against the model's own counts, MFU in the metrics."""

from pathlib import Path

import pytest

from lmlab.compute import GPUS, estimate, estimated_speed, gpu_named, measure_speed, run_seconds
from lmlab.config import load_config
from lmlab.nn import TransformerLM
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from tests.helpers.lmlab_cli import cli
from tests.helpers.paths import PRESETS
from tests.helpers.tiny_runs import tiny_run

PLACEHOLDER = ["data.train_path=t.bin", "data.valid_path=v.bin"]


@pytest.mark.parametrize("words", [
    [], ["model.tie_embeddings=true"], ["model.ffn=silu"], ["model.norm=none"],
    ["optim.optimizer=muon"],
    ["model.ffn=relu2", "model.qk_norm=true", "model.unet_skips=true",
     "model.value_residual=true"]],
    ids=str)
def test_the_estimate_counts_what_the_model_has(words: list[str]) -> None:
    config = load_config(PRESETS / "tinystories-17m.toml", [*PLACEHOLDER, *words])
    model = TransformerLM(config.model, device="meta")
    est = estimate(config)
    assert est.parameters == model.num_parameters()
    assert est.block_parameters == model.num_parameters(non_embedding=True)
    assert est.embedding_parameters == model.token_embeddings.weight.numel()
    assert est.output_parameters == (0 if config.model.tie_embeddings
                                     else model.lm_head.weight.numel())
    assert est.flops_per_token == pytest.approx(model.flops_per_token(), rel=0.05)
    assert est.tokens == 327_680_000


def test_estimate_prints_counts_time_and_a_memory_warning(capsys) -> None:
    config = PRESETS / "tinystories-17m.toml"
    code, out, err = cli(capsys, "estimate", config, *PLACEHOLDER, "--gpu", "H100")
    assert code == 0 and err == ""
    model = TransformerLM(load_config(config, PLACEHOLDER).model, device="meta")
    assert f"parameters       {model.num_parameters():,}: " in out
    seconds = 327_680_000 * estimate(load_config(config, PLACEHOLDER)).flops_per_token / (
        GPUS["H100"]["bfloat16"] * 0.4)
    assert f"time on H100     {seconds / 60:.1f} min for 327,680,000 tokens at 40% MFU" in out
    code, _, err = cli(capsys, "estimate", config, *PLACEHOLDER, "train.batch_size=4096",
                       "--gpu", "L4")
    assert code == 0 and err.startswith("warning: about ") and "24 GB of one L4" in err


def test_each_parameter_count_is_named_and_cs336_s_17m_is_all_but_the_embedding(capsys) -> None:
    """CS336's TinyStories model has "~17M non-embedding parameters": 4 blocks of 4 x 512^2 +
    3 x 512 x 1344 + 2 x 512, the final norm and the 10,000 x 512 output projection."""
    blocks = 4 * (4 * 512**2 + 3 * 512 * 1344 + 2 * 512) + 512
    est = estimate(load_config(PRESETS / "tinystories-17m.toml", PLACEHOLDER))
    assert (est.parameters, est.block_parameters, est.output_parameters,
            est.embedding_parameters) == (22_696_448, blocks, 5_120_000, 5_120_000)
    assert est.without_embedding == blocks + 5_120_000 == 17_576_448
    code, out, _ = cli(capsys, "estimate", "tinystories-17m", *PLACEHOLDER)
    assert code == 0 and out.splitlines()[:3] == [
        "parameters       22,696,448: 12,456,448 in the blocks, 5,120,000 output, 5,120,000 "
        "embedding",
        "non-embedding    17,576,448 as CS336 counts (all but the input embedding),",
        "                 12,456,448 as Kaplan et al. (the blocks alone)"]
    tied = estimate(load_config(PRESETS / "experiments" / "cpu-base.toml", PLACEHOLDER))
    assert tied.counts() == "853,120 in the blocks, 131,072 embedding (tied: also the output)"


def test_a_run_s_time_is_measured_here_on_random_ids(tmp_path: Path) -> None:
    config = load_config(None, tiny_run(tmp_path, "train.grad_accum=2"))
    speed = measure_speed(config, steps=2)
    assert speed.step_s > speed.eval_batch_s > 0 and speed.device == "cpu"
    assert speed.how == ("measured here: 2 steps on cpu after a warm-up (random ids, not "
                         "compiled)")
    seconds, evaluations = run_seconds(config, speed)  # no validation file given: not counted
    assert (seconds, evaluations) == (30 * speed.step_s, None)
    assert estimated_speed(config) is None  # a CPU's peak is not known
    budget = load_config(None, tiny_run(tmp_path, "train.time_budget_s=5", "train.max_steps=none"))
    assert run_seconds(budget, speed, fraction_done=0.2) == (pytest.approx(4.0), None)


def test_gpu_names() -> None:
    assert gpu_named("NVIDIA H200") == "H200" and gpu_named("NVIDIA A100-SXM4-80GB") == "A100"
    assert gpu_named("NVIDIA L4") == "L4" and gpu_named("NVIDIA B200") == "B200"


def test_mfu_is_logged_when_the_peak_is_known(tmp_path: Path) -> None:
    result = train(load_config(None, tiny_run(tmp_path, "train.max_steps=3", "optim.warmup_iters=1",
                                              "train.peak_flops=1e9")))
    records = [r for r in RunDir(result.run_dir).read_metrics() if "train/loss" in r]
    model = TransformerLM(load_config(None, tiny_run(tmp_path)).model, device="meta")
    for record in records:
        assert record["train/mfu"] == pytest.approx(
            record["train/tokens_per_s"] * model.flops_per_token() / 1e9)
    plain = train(load_config(None, tiny_run(tmp_path, "train.max_steps=2", "optim.warmup_iters=1",
                                             "run.name=plain")))
    assert not any("train/mfu" in r for r in RunDir(plain.run_dir).read_metrics())  # CPU
