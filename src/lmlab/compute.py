"""What a run costs: the peak FLOP/s of common GPUs, model FLOPs utilisation (MFU), and the
estimate ``lmlab estimate`` prints before a user pays for a run.

Counts come from the config alone (no model is built), in the same terms as
``TransformerLM.num_parameters`` and ``TransformerLM.flops_per_token`` (``tests/test_compute.py``
checks the two agree): matmul FLOPs ``6 N`` per training token over the matrices used as
matmuls, plus attention's ``12 L s d``. Memory is an estimate, not a measurement: fp32 weights,
gradients and optimizer state, and activations by Korthikanti et al.'s ``34 s b d`` bytes per
layer at 16-bit (scaled to the autocast dtype), plus the logits and their gradient.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `lmlab estimate` builds its --gpu choices from GPUS at start-up: no pydantic
    from lmlab.config import Config

GPUS: dict[str, dict[str, float]] = {
    # dense (no sparsity) peak FLOP/s from NVIDIA's datasheets; memory in bytes
    "H100": {"bfloat16": 989e12, "float32": 67e12, "memory": 80e9},     # SXM
    "H200": {"bfloat16": 989e12, "float32": 67e12, "memory": 141e9},
    "B200": {"bfloat16": 2250e12, "float32": 80e12, "memory": 180e9},
    "A100": {"bfloat16": 312e12, "float32": 19.5e12, "memory": 80e9},   # SXM 80 GB
    "L4": {"bfloat16": 121e12, "float32": 30.3e12, "memory": 24e9},
    "RTX 4090": {"bfloat16": 165e12, "float32": 82.6e12, "memory": 24e9},
}
"""Peak matmul FLOP/s (bf16 tensor cores; plain fp32) and memory of the GPUs named in MFU."""


def gpu_named(device_name: str) -> str | None:
    """The key of :data:`GPUS` that ``torch.cuda.get_device_name()`` names, or None.

    >>> gpu_named("NVIDIA H100 80GB HBM3"), gpu_named("NVIDIA GeForce RTX 4090"), gpu_named("T4")
    ('H100', 'RTX 4090', None)
    """
    for name in sorted(GPUS, key=len, reverse=True):  # "RTX 4090" before a shorter match
        if name.replace(" ", "").lower() in device_name.replace(" ", "").lower():
            return name
    return None


def peak_flops(config: "Config", device_name: str | None, bf16: bool) -> float | None:
    """The peak FLOP/s that MFU divides by: ``train.peak_flops`` when set (the only source on a
    CPU or MPS), else the GPU's from :data:`GPUS` for the dtype in use; None when unknown."""
    if config.train.peak_flops is not None:
        return config.train.peak_flops
    gpu = gpu_named(device_name) if device_name else None
    return GPUS[gpu]["bfloat16" if bf16 else "float32"] if gpu else None


@dataclass(frozen=True)
class Estimate:
    """What a config's run needs, from :func:`estimate`."""

    parameters: int
    embedding_parameters: int
    flops_per_token: float
    """Training FLOPs per token (forward and backward)."""
    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    tokens: int | None
    """The run's token budget (None for a time budget alone)."""

    @property
    def memory_bytes(self) -> float:
        return (self.weights_bytes + self.gradients_bytes + self.optimizer_bytes
                + self.activations_bytes)

    def seconds(self, peak: float, mfu: float) -> float | None:
        """Wall time of the token budget at ``mfu`` of ``peak`` FLOP/s."""
        return None if self.tokens is None else self.tokens * self.flops_per_token / (peak * mfu)


def estimate(config: "Config") -> Estimate:
    """Parameters, FLOPs per token and memory of ``config``'s run, from the config alone."""
    model, train = config.model, config.train
    d, layers, vocab, seq = model.d_model, model.num_layers, model.vocab_size, model.context_length
    ffn_matrices = 3 if model.ffn == "swiglu" else 2
    block_matrices = 4 * d * d + ffn_matrices * d * model.ffn_width
    gains = (2 * layers + 1) * d if model.norm == "rms" else 0
    gains += 2 * layers * model.d_head if model.qk_norm else 0
    gains += layers // 2 if model.unet_skips else 0
    gains += layers - 1 if model.value_residual else 0
    embedding = vocab * d * (1 if model.tie_embeddings else 2)
    parameters = layers * block_matrices + gains + embedding
    flops = 6 * (layers * block_matrices + vocab * d) + 12 * layers * seq * d
    adam_state = 8  # two fp32 moments per parameter; Muon keeps one for its matrices
    muon = config.optim.optimizer == "muon"
    optimizer = (4 * layers * block_matrices + 8 * (parameters - layers * block_matrices)
                 if muon else adam_state * parameters)
    act_bytes = 2 if train.dtype != "float32" and train.device != "cpu" else 4
    micro = train.batch_size * seq
    activations = (layers * 34 * micro * d * act_bytes / 2
                   + micro * vocab * 4 * 2)  # the logits in fp32 and their gradient
    return Estimate(parameters, embedding, float(flops), 4.0 * parameters, 4.0 * parameters,
                    float(optimizer), float(activations),
                    config.max_steps * config.tokens_per_step if config.max_steps else None)
