"""What a run costs: the peak FLOP/s of common GPUs, model FLOPs utilisation (MFU), the
estimate ``lmlab estimate`` prints before a user pays for a run, and the time of a run here,
measured or estimated, that ``lmlab sweep --dry-run`` adds up.

Counts come from the config alone (no model is built), in the same terms as
``TransformerLM.num_parameters`` and ``TransformerLM.flops_per_token`` (``tests/test_compute.py``
checks the two agree): matmul FLOPs ``6 N`` per training token over the matrices used as
matmuls, plus attention's ``12 L s d``. Memory is an estimate checked against measured peaks
(``tests/test_compute.py``; docs/benchmarks.md, "Memory: the estimate against measured peaks"):
fp32 weights, gradients and optimizer state, and per token ``16 d + 3 d_ff`` saved values a
block at the autocast precision plus four fp32 copies of the logits.
"""

import math
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lmlab.text import plural

if TYPE_CHECKING:  # `lmlab estimate` builds its --gpu choices from GPUS at start-up: no pydantic
    import torch

    from lmlab.config import Config

GPUS: dict[str, dict[str, float]] = {
    # dense (no sparsity) peak FLOP/s from the vendors' datasheets: tensor cores at bf16 and
    # fp16 with fp32 accumulation, plain fp32; memory in bytes. A card without "bfloat16" has no
    # bf16 tensor cores: train.dtype=auto trains it in float16. Sources: docs/gpu.md#the-cards
    "H100": {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12, "memory": 80e9},  # SXM
    "H200": {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12, "memory": 141e9},
    "B200": {"bfloat16": 2250e12, "float16": 2250e12, "float32": 80e12, "memory": 180e9},
    "A100": {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12, "memory": 80e9},
    "A100 40GB": {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12, "memory": 40e9},
    "L40S": {"bfloat16": 362e12, "float16": 362e12, "float32": 91.6e12, "memory": 48e9},
    "A10": {"bfloat16": 125e12, "float16": 125e12, "float32": 31.2e12, "memory": 24e9},
    "A10G": {"bfloat16": 70e12, "float16": 70e12, "float32": 31.2e12, "memory": 24e9},  # AWS's
    "L4": {"bfloat16": 121e12, "float16": 121e12, "float32": 30.3e12, "memory": 24e9},
    "V100": {"float16": 125e12, "float32": 15.7e12, "memory": 16e9},  # SXM2
    "V100 32GB": {"float16": 125e12, "float32": 15.7e12, "memory": 32e9},
    "T4": {"float16": 65e12, "float32": 8.1e12, "memory": 16e9},
    "RTX 2080 Ti": {"float16": 53.8e12, "float32": 13.4e12, "memory": 11e9},
    "RTX 3090": {"bfloat16": 71e12, "float16": 71e12, "float32": 35.6e12, "memory": 24e9},
    "RTX 4060": {"bfloat16": 30.2e12, "float16": 30.2e12, "float32": 15.1e12, "memory": 8e9},
    "RTX 4090": {"bfloat16": 165e12, "float16": 165e12, "float32": 82.6e12, "memory": 24e9},
    "Apple M-series": {},  # unified memory of any size (--memory-gb); no published peak
}
"""Peak matmul FLOP/s by precision and memory of the GPUs that ``lmlab estimate --gpu`` knows
and that MFU is logged for."""

ESTIMATE_GPU = "H100"
"""The card ``lmlab estimate`` assumes when the config's device is not a CPU and no ``--gpu``
is named, and ``lmlab sweep --dry-run --no-measure`` for a run that is not on a CPU."""

MEMORY_HEADROOM = 0.1
"""The fraction of a device's memory a batch leaves free, for the allocator's fragmentation and
the framework's own buffers: ``lmlab estimate`` warns above 90% of a card's memory, and
``train.batch_size = "auto"`` chooses the largest batch that stays below it."""

MEASURED_MFU = (
    # (parameters, compiled, MFU, what was measured): docs/benchmarks.md, "The GPU check"
    (22_696_448, True, 0.173, "the 17M model compiled, batch 64, on an H200 (4 Dec 2026)"),
    (22_696_448, False, 0.051, "the 17M model eager, batch 64, on an H200 (4 Dec 2026)"),
    (134_000_000, True, 0.304, "the leaderboard model (134M) compiled, on an H200 (4 Dec 2026)"),
)
"""The MFU lmlab measured, by model size and compilation: what the estimate assumes for the
model nearest in size (``--mfu`` sets another)."""


def default_mfu(parameters: int, compiled: bool) -> tuple[float, str]:
    """The measured MFU of :data:`MEASURED_MFU` nearest to ``parameters`` (by ratio), compiled
    or not as asked, and what it was measured on.

    >>> default_mfu(30_000_000, True)[0], default_mfu(300_000_000, True)[0]
    (0.173, 0.304)
    """
    rows = [row for row in MEASURED_MFU if row[1] == compiled]
    _, _, mfu, what = min(rows, key=lambda row: abs(math.log(parameters / row[0])))
    return mfu, what


def card_precision(dtype: str, gpu: str) -> str:
    """The precision a run of ``train.dtype`` computes in on ``gpu``: bfloat16 where the card
    has it, float16 on a card without it (``auto``'s choice there), float32 when asked.

    >>> [card_precision(dtype, gpu) for dtype, gpu in [("auto", "H100"), ("auto", "T4")]]
    ['bfloat16', 'float16']
    """
    if dtype == "float32" or not GPUS[gpu]:  # Apple's GPUs train in float32 with auto
        return "float32"
    return "bfloat16" if dtype != "float16" and "bfloat16" in GPUS[gpu] else "float16"


CPU_MEASURE_TOKENS = 2048
"""On a CPU a measured batch holds at most this many tokens and the time is scaled up to the
configured batch (a CPU's time grows with the tokens), so that a dry run stays quick."""


def gpu_named(device_name: str) -> str | None:
    """The key of :data:`GPUS` that ``torch.cuda.get_device_name()`` names, or None.

    >>> gpu_named("NVIDIA H100 80GB HBM3"), gpu_named("NVIDIA GeForce RTX 4090"), gpu_named("K80")
    ('H100', 'RTX 4090', None)
    """
    for name in sorted(GPUS, key=len, reverse=True):  # "RTX 4090" before a shorter match
        if name.replace(" ", "").lower() in device_name.replace(" ", "").lower():
            return name
    return None


def peak_flops(config: "Config", device_name: str | None, dtype: "torch.dtype | None"
               ) -> float | None:
    """The peak FLOP/s that MFU divides by: ``train.peak_flops`` when set (the only source on a
    CPU or MPS), else the GPU's from :data:`GPUS` for the autocast ``dtype`` in use (None:
    float32); None when unknown."""
    if config.train.peak_flops is not None:
        return config.train.peak_flops
    gpu = gpu_named(device_name) if device_name else None
    precision = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    return GPUS[gpu].get(precision) if gpu else None


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


def estimate(config: "Config", *, batch: int | None = None,
             precision: str | None = None) -> Estimate:
    """Parameters, FLOPs per token and memory of ``config``'s run, from the config alone:
    activations at ``batch`` sequences a micro-batch (default ``train.batch_size``) computed in
    ``precision`` (default: 16-bit autocast off a CPU unless ``train.dtype`` is float32)."""
    model, train = config.model, config.train
    batch = config.train.known_batch_size if batch is None else batch
    if precision is None:
        precision = "bfloat16" if train.dtype != "float32" and train.device != "cpu" else "float32"
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
    act_bytes = 4 if precision == "float32" else 2
    # a token's saved values: 16 d + 3 d_ff in each block, four fp32 copies of its logits
    per_token = layers * (16 * d + 3 * model.ffn_width) * act_bytes + 4 * vocab * 4
    activations = batch * seq * per_token
    return Estimate(parameters, vocab * d, output, float(flops), 4.0 * parameters,
                    4.0 * parameters,
                    float(optimizer), float(activations),
                    config.max_steps * config.tokens_per_step
                    if train.batch_size != "auto" and config.max_steps else None)


def largest_batch(config: "Config", memory: float, precision: str | None = None) -> int:
    """The largest micro-batch whose estimated memory stays within ``memory`` bytes less
    :data:`MEMORY_HEADROOM` (0: not even one sequence fits). The estimate grows linearly with
    the batch, so this is exact: one more sequence would exceed the limit."""
    fixed = estimate(config, batch=0, precision=precision).memory_bytes
    per_sequence = estimate(config, batch=1, precision=precision).memory_bytes - fixed
    return max(0, math.floor(((1 - MEMORY_HEADROOM) * memory - fixed) / per_sequence))


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

    from lmlab.device import flush_denormals, resolve_device
    from lmlab.random_steps import RandomSteps

    device = resolve_device(config.train.device)
    flush_denormals(device)
    wanted = config.train.known_batch_size
    seq = config.model.context_length
    batch = wanted if device.type != "cpu" else max(1, min(wanted, CPU_MEASURE_TOKENS // seq))
    scale = wanted / batch
    random_steps = RandomSteps(config, device)
    ids = random_steps.ids(batch)
    micro_batches = config.train.grad_accum if config.train.grad_accum != "auto" else 1

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

    step_s = timed(lambda: random_steps.step(ids, micro_batches))
    random_steps.model.eval()
    eval_s = timed(lambda: random_steps.forward(ids))
    scaled = f", scaled from {batch} sequences" if batch != wanted else ""
    return Speed(step_s, eval_s, f"measured here: {plural(steps, 'step')} on {device.type} after "
                                 f"a warm-up (random ids, not compiled{scaled})", device.type)


def estimated_speed(config: "Config") -> Speed | None:
    """The speed ``lmlab estimate`` assumes: the MFU lmlab measured for a model of this size
    (:func:`default_mfu`) of ``train.peak_flops``, else of the :data:`ESTIMATE_GPU`; None for a
    CPU run without ``train.peak_flops`` (a CPU's peak is not known)."""
    peak = config.train.peak_flops
    if peak is None:
        if config.train.device == "cpu":
            return None
        precision = card_precision(config.train.dtype, ESTIMATE_GPU)
        peak = GPUS[ESTIMATE_GPU][precision]
        where = f"{ESTIMATE_GPU} ({precision})"
    else:
        where = f"train.peak_flops {peak:.3g}"
    est = estimate(config)
    mfu, _ = default_mfu(est.parameters, config.train.compile)
    per_token = est.flops_per_token / (peak * mfu)
    eval_tokens = config.train.known_batch_size * config.model.context_length
    return Speed(config.tokens_per_step * per_token, eval_tokens * per_token / 3,
                 f"estimated: {mfu:.0%} MFU of {where}, as lmlab estimate")


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
        math.ceil((valid_tokens - 1) / config.model.context_length) / train.known_batch_size)
    evaluations = math.ceil(evaluations * left)
    return train_s * left + evaluations * batches * speed.eval_batch_s, evaluations
