"""What only a CUDA GPU can show (`pytest -m cuda`, run by bench/gpu_check.sh): the model on the
GPU computes what it computes on the CPU, the fused kernel the same function, and a training run
logs MFU from the card's peak. Skipped, with the reason, where there is no GPU."""

from pathlib import Path

import pytest
import torch

from lmlab.config import ModelConfig, load_config
from lmlab.nn import TransformerLM
from lmlab.training.loop import train
from lmlab.training.rundir import RunDir
from tests.helpers.tiny_runs import tiny_run

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("fused", [False, True], ids=["lmlab-attention", "fused-attention"])
def test_the_model_on_the_gpu_computes_the_cpu_logits(fused: bool) -> None:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=512, context_length=128, d_model=128, num_layers=2,
                         num_heads=4, fused_attention=fused)
    model = TransformerLM(config).eval()
    ids = torch.randint(0, 512, (4, 128))
    with torch.no_grad():
        expected = model(ids)
        got = model.cuda()(ids.cuda()).cpu()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = model(ids.cuda()).float().cpu()
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
    assert (bf16 - expected).abs().max() < 0.1  # bf16 keeps ~3 significant digits


def test_a_gpu_run_trains_and_logs_mfu(tmp_path: Path) -> None:
    words = [w for w in tiny_run(tmp_path, "train.max_steps=20") if w != "train.device=cpu"]
    result = train(load_config(None, [*words, "train.device=cuda"]))
    records = [r for r in RunDir(result.run_dir).read_metrics() if "train/loss" in r]
    assert result.status == "finished" and records[-1]["train/loss"] < records[0]["train/loss"]
    if torch.cuda.get_device_name() and any(k in torch.cuda.get_device_name()
                                            for k in ("H100", "H200", "A100", "L4", "B200")):
        assert 0 < records[-1]["train/mfu"] < 1
