"""What a run costs: `lmlab estimate` against the model's own counts, MFU in the metrics."""

from pathlib import Path

import pytest

from lmlab.compute import GPUS, estimate, gpu_named
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
    assert est.parameters - est.embedding_parameters == model.num_parameters(non_embedding=True)
    assert est.flops_per_token == pytest.approx(model.flops_per_token(), rel=0.05)
    assert est.tokens == 327_680_000


def test_estimate_prints_counts_time_and_a_memory_warning(capsys) -> None:
    config = PRESETS / "tinystories-17m.toml"
    code, out, err = cli(capsys, "estimate", config, *PLACEHOLDER, "--gpu", "H100")
    assert code == 0 and err == ""
    model = TransformerLM(load_config(config, PLACEHOLDER).model, device="meta")
    assert f"parameters       {model.num_parameters():,} (" in out
    seconds = 327_680_000 * estimate(load_config(config, PLACEHOLDER)).flops_per_token / (
        GPUS["H100"]["bfloat16"] * 0.4)
    assert f"time on H100     {seconds / 3600:.2f} h for 327,680,000 tokens at 40% MFU" in out
    code, _, err = cli(capsys, "estimate", config, *PLACEHOLDER, "train.batch_size=4096",
                       "--gpu", "L4")
    assert code == 0 and err.startswith("warning: about ") and "24 GB of one L4" in err


def test_gpu_names() -> None:
    assert gpu_named("NVIDIA H200") == "H200" and gpu_named("NVIDIA A100-SXM4-80GB") == "A100"
    assert gpu_named("NVIDIA L4") == "L4" and gpu_named("NVIDIA B200") == "B200"


def test_mfu_is_logged_when_the_peak_is_known(tmp_path: Path) -> None:
    result = train(load_config(None, tiny_run(tmp_path, "train.max_steps=3",
                                              "train.peak_flops=1e9")))
    records = [r for r in RunDir(result.run_dir).read_metrics() if "train/loss" in r]
    model = TransformerLM(load_config(None, tiny_run(tmp_path)).model, device="meta")
    for record in records:
        assert record["train/mfu"] == pytest.approx(
            record["train/tokens_per_s"] * model.flops_per_token() / 1e9)
    plain = train(load_config(None, tiny_run(tmp_path, "train.max_steps=2", "run.name=plain")))
    assert not any("train/mfu" in r for r in RunDir(plain.run_dir).read_metrics())  # CPU
