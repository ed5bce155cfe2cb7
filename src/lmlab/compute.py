"""What a run costs: the peak FLOP/s of common GPUs, model FLOPs utilisation (MFU), the
estimate ``lmlab estimate`` prints before a user pays for a run, and the time of a run here,
measured or estimated, that ``lmlab sweep --dry-run`` adds up.

Counts come from the config alone (no model is built), in the same terms as
``TransformerLM.num_parameters`` and ``TransformerLM.flops_per_token`` (``tests/test_compute.py``
checks the two agree): matmul FLOPs ``6 N`` per training token over the matrices used as
matmuls, plus attention's ``12 L s d``. Memory is an estimate, not a measurement: fp32 weights,
gradients and optimizer state, and activations by Korthikanti et al.'s ``34 s b d`` bytes per
layer at 16-bit (scaled to the autocast dtype), plus the logits and their gradient.
"""

import math
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lmlab.text import plural

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

ESTIMATE_GPU, ESTIMATE_MFU = "H100", 0.4
"""What ``lmlab estimate`` assumes by default, and ``lmlab sweep --dry-run --no-measure`` for a
run that is not on a CPU: 40% MFU, typical of small models in bf16."""

CPU_MEASURE_TOKENS = 2048
"""On a CPU a measured batch holds at most this many tokens and the time is scaled up to the
configured batch (a CPU's time grows with the tokens), so that a dry run stays quick."""


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
    """Every distinct parameter (a tied matrix once)."""
    embedding_parameters: int
    """The input embedding, ``vocab_size x d_model`` (with tied embeddings, also the output)."""
    output_parameters: int
    """The output projection, ``vocab_size x d_model``; 0 when tied to the embedding."""
    flops_per_token: float
    """Training FLOPs per token (forward and backward)."""
    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    tokens: int | None
    """The run's token budget (None for a time budget alone)."""

    @property
    def block_parameters(self) -> int:
        """The blocks and the final norm: neither embedding nor output (Kaplan et al.'s
        non-embedding N, ``TransformerLM.num_parameters(non_embedding=True)``)."""
        return self.parameters - self.embedding_parameters - self.output_parameters

    @property
    def without_embedding(self) -> int:
        """All but the input embedding: what CS336 calls non-embedding parameters (its
        TinyStories model's "17M" is 17,576,448 of them: the output projection counts)."""
        return self.parameters - self.embedding_parameters

    def counts(self) -> str:
        """The parts of :attr:`parameters`, each by its name: ``12,456,448 in the blocks,
        5,120,000 output, 5,120,000 embedding``."""
        parts = [f"{self.block_parameters:,} in the blocks"]
        if self.output_parameters:
            parts += [f"{self.output_parameters:,} output", f"{self.embedding_parameters:,} "
                      "embedding"]
        else:
            parts.append(f"{self.embedding_parameters:,} embedding (tied: also the output)")
        return ", ".join(parts)

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
    output = 0 if model.tie_embeddings else vocab * d
    parameters = layers * block_matrices + gains + vocab * d + output
    flops = 6 * (layers * block_matrices + vocab * d) + 12 * layers * seq * d
    adam_state = 8  # two fp32 moments per parameter; Muon keeps one for its matrices
    muon = config.optim.optimizer == "muon"
    optimizer = (4 * layers * block_matrices + 8 * (parameters - layers * block_matrices)
                 if muon else adam_state * parameters)
    act_bytes = 2 if train.dtype != "float32" and train.device != "cpu" else 4
    micro = train.batch_size * seq
    activations = (layers * 34 * micro * d * act_bytes / 2
                   + micro * vocab * 4 * 2)  # the logits in fp32 and their gradient
    return Estimate(parameters, vocab * d, output, float(flops), 4.0 * parameters,
                    4.0 * parameters,
                    float(optimizer), float(activations),
                    config.max_steps * config.tokens_per_step if config.max_steps else None)


def duration(seconds: float) -> str:
    """A time as people read it: ``42 s``, ``3.5 min`` or ``2.1 h``.

    >>> duration(42.4), duration(210), duration(7560)
    ('42 s', '3.5 min', '2.1 h')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Speed:
    """How fast a config's run goes: the seconds of one optimizer step and of one evaluation
    batch (``batch_size`` windows, forward only), and how they were found, in words."""

    step_s: float
    eval_batch_s: float
    how: str
    device: str | None = None
    """The device type it was measured on (None: estimated)."""


def measure_speed(config: "Config", steps: int = 3) -> Speed:
    """The median of ``steps`` optimizer steps (and forward passes) of ``config``'s model on its
    device after one warm-up step: random weights and ids (no data needed), never compiled (a
    compiled run is faster once built). On a CPU a batch of at most :data:`CPU_MEASURE_TOKENS`
    tokens is timed and scaled to the configured one."""
    import torch

    from lmlab.device import autocast, flush_denormals, resolve_device, resolve_dtype
    from lmlab.loss import cross_entropy
    from lmlab.nn import TransformerLM
    from lmlab.optim.groups import build_optimizer

    train, seq = config.train, config.model.context_length
    device = resolve_device(train.device)
    flush_denormals(device)
    dtype = resolve_dtype(train.dtype, device)
    batch = train.batch_size if device.type != "cpu" else max(
        1, min(train.batch_size, CPU_MEASURE_TOKENS // seq))
    scale = train.batch_size / batch
    generator = torch.Generator().manual_seed(0)
    model = TransformerLM(config.model, device=device)
    optimizer = build_optimizer(model, config)
    ids = torch.randint(0, config.model.vocab_size, (batch, seq + 1), generator=generator)
    inputs, targets = ids[:, :-1].to(device), ids[:, 1:].to(device)

    def step() -> None:
        for _ in range(train.grad_accum):
            with autocast(device, dtype):
                loss = cross_entropy(model(inputs), targets)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def forward() -> None:
        with torch.no_grad(), autocast(device, dtype):
            model(inputs)

    def timed(work) -> float:
        """The median seconds of ``steps`` calls after a warm-up one, scaled to the batch."""
        seconds = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            work()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds[1:]) * scale

    step_s = timed(step)
    model.eval()
    eval_s = timed(forward)
    scaled = f", scaled from {batch} sequences" if batch != train.batch_size else ""
    return Speed(step_s, eval_s, f"measured here: {plural(steps, 'step')} on {device.type} after "
                                 f"a warm-up (random ids, not compiled{scaled})", device.type)


def estimated_speed(config: "Config") -> Speed | None:
    """The speed ``lmlab estimate`` assumes: :data:`ESTIMATE_MFU` of ``train.peak_flops``, else
    of the :data:`ESTIMATE_GPU`; None for a CPU run without ``train.peak_flops`` (a CPU's peak
    is not known)."""
    bf16 = config.train.dtype != "float32"
    peak = config.train.peak_flops
    if peak is None:
        if config.train.device == "cpu":
            return None
        peak = GPUS[ESTIMATE_GPU]["bfloat16" if bf16 else "float32"]
        where = f"{ESTIMATE_GPU} ({'bf16' if bf16 else 'fp32'})"
    else:
        where = f"train.peak_flops {peak:.3g}"
    per_token = estimate(config).flops_per_token / (peak * ESTIMATE_MFU)
    eval_tokens = config.train.batch_size * config.model.context_length
    return Speed(config.tokens_per_step * per_token, eval_tokens * per_token / 3,
                 f"estimated: {ESTIMATE_MFU:.0%} MFU of {where}, as lmlab estimate")


def run_seconds(config: "Config", speed: Speed, *, valid_tokens: int | None = None,
                fraction_done: float = 0.0) -> tuple[float, int | None]:
    """The wall seconds of what is left of ``config``'s run at ``speed`` (its training: its time
    budget or its steps, whichever ends it first; plus its evaluations of ``valid_tokens``
    validation tokens, when known), and how many evaluations that counts (None: not counted)."""
    train, budget = config.train, config.train.time_budget_s
    train_s = min(config.max_steps * speed.step_s if config.max_steps else math.inf,
                  budget if budget is not None else math.inf)
    left = 1.0 - min(max(fraction_done, 0.0), 1.0)
    if valid_tokens is None and not train.eval_batches:
        return train_s * left, None
    steps = max(1, round(train_s / speed.step_s))
    evaluations = (1 + (steps - 1) // train.eval_interval if train.eval_interval else 1)
    batches = train.eval_batches or math.ceil(
        math.ceil((valid_tokens - 1) / config.model.context_length) / train.batch_size)
    evaluations = math.ceil(evaluations * left)
    return train_s * left + evaluations * batches * speed.eval_batch_s, evaluations
