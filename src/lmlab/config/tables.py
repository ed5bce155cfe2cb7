"""Validated configuration: one pydantic model per config table.

Unknown keys and bad values are errors that name the key (``extra="forbid"`` everywhere), so a typo
in a TOML file or a CLI override never silently trains the wrong model.
"""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmlab.errors import ConfigError


class _Section(BaseModel):
    """Base of every config table: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def default_d_ff(d_model: int, ffn: str) -> int:
    """Feed-forward width when none is given.

    SwiGLU has three matrices, so it uses 8/3 * d_model (rounded up to a multiple of 64 for
    hardware-friendly shapes) to match the parameter count of a 4 * d_model two-matrix FFN.

    >>> default_d_ff(512, "swiglu"), default_d_ff(512, "silu")
    (1408, 2048)
    """
    if ffn == "swiglu":
        return -(-(8 * d_model) // (3 * 64)) * 64
    return 4 * d_model  # silu and relu2: two matrices


class ModelConfig(_Section):
    """Shape of the Transformer LM and the architecture switches used for ablations."""

    vocab_size: int = Field(10_000, gt=0, description="Number of token ids the model embeds.")
    context_length: int = Field(256, gt=0, description="Longest sequence the model accepts.")
    d_model: int = Field(512, gt=0, description="Width of the residual stream.")
    num_layers: int = Field(4, gt=0, description="Number of Transformer blocks.")
    num_heads: int = Field(16, gt=0, description="Attention heads; must divide d_model.")
    d_ff: int | None = Field(
        None, gt=0, description="FFN hidden width (default: 8/3*d_model rounded to 64 for "
        "SwiGLU, 4*d_model for SiLU)."
    )
    rope_theta: float = Field(10_000.0, gt=0, description="RoPE base frequency.")
    norm: Literal["rms", "none"] = Field("rms", description="Normalisation layer (ablation).")
    norm_position: Literal["pre", "post"] = Field(
        "pre", description="Norm before each sublayer (pre) or after the residual add (post)."
    )
    position: Literal["rope", "nope"] = Field(
        "rope", description="Rotary position embedding, or no position information (NoPE)."
    )
    ffn: Literal["swiglu", "silu", "relu2"] = Field(
        "swiglu", description="Gated SwiGLU, plain SiLU, or ReLU^2 (W2 ReLU(W1 x)^2) FFN."
    )
    qk_norm: bool = Field(
        False, description="RMSNorm on each head's queries and keys before RoPE (QK-norm): "
        "bounded attention logits, which tolerate higher learning rates."
    )
    zero_init_proj: bool = Field(
        False, description="Start the attention and FFN output projections at zero: every "
        "block begins as the identity on the residual stream."
    )
    unet_skips: bool = Field(
        False, description="U-net skips: block i's output is added, times a learned weight "
        "(init 1), to the input of block num_layers-1-i, for the first half of the blocks."
    )
    value_residual: bool = Field(
        False, description="Value residual: every block after the first mixes the first block's "
        "attention values into its own, v = l*v + (1-l)*v_first, with a learned l (init 0.5)."
    )
    logit_softcap: float | None = Field(
        None, gt=0, description="Cap the output logits smoothly at +-c: c * tanh(logits / c) "
        "(15-30 in the speedruns; none: off)."
    )
    tie_embeddings: bool = Field(False, description="Share token embedding and output weights.")
    embedding_std: float | None = Field(
        None, gt=0, description="Std of the untied token embedding's truncated-normal init (none: "
        "1, the CS336 spec; GPT-2 and nanoGPT use 0.02). A tied matrix starts as the output "
        "projection, so setting it with tie_embeddings is an error."
    )
    dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout probability on the embeddings and on each "
        "sublayer's output while training (a regulariser for data seen many times; 0: off)."
    )
    fused_attention: bool = Field(
        False, description="Opt-in fast path: PyTorch's fused attention kernel instead of lmlab's "
        "own (the same function, checked by tests/test_attention.py)."
    )

    @model_validator(mode="after")
    def _check_shape(self) -> "ModelConfig":
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                f"model.d_model ({self.d_model}) must be divisible by model.num_heads "
                f"({self.num_heads})"
            )
        if self.position == "rope" and (self.d_model // self.num_heads) % 2 != 0:
            raise ValueError(
                f"RoPE needs an even head size, got d_model/num_heads = "
                f"{self.d_model // self.num_heads}"
            )
        if self.tie_embeddings and self.embedding_std is not None:
            raise ValueError(
                "model.embedding_std sets an untied embedding's init, but with "
                "model.tie_embeddings=true the shared matrix starts as the output projection: "
                "drop one of the two"
            )
        return self

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads

    @property
    def ffn_width(self) -> int:
        """The FFN hidden width actually used (``d_ff`` or its default)."""
        return self.d_ff if self.d_ff is not None else default_d_ff(self.d_model, self.ffn)


class OptimConfig(_Section):
    """The optimizer (AdamW, or Muon with AdamW), the cosine schedule and gradient clipping."""

    optimizer: Literal["adamw", "muon"] = Field(
        "adamw", description="adamw: AdamW for every parameter. muon: Muon for the blocks' weight "
        "matrices (at muon_lr) and AdamW for embeddings, output projection and norm gains."
    )

    lr_max: float = Field(1e-3, gt=0, description="Peak learning rate, reached after warmup.")
    lr_min: float = Field(1e-4, ge=0, description="Final learning rate of the decay: at most "
                          "lr_max (a run refuses a floor above its peak).")
    warmup_iters: int = Field(100, ge=0, description="Steps of linear warmup from 0 to lr_max: a "
                              "run of a known number of steps refuses a warmup as long as itself "
                              "and warns when it covers over half of it.")
    cosine_cycle_iters: int | None = Field(
        None, ge=0, description="Step at which the decay reaches lr_min (default: max_steps); "
        "it must come after warmup_iters."
    )
    schedule: Literal["cosine", "linear", "wsd"] = Field(
        "cosine", description="Shape of the decay from lr_max to lr_min after warmup: cosine, "
        "linear, or wsd (warmup-stable-decay: flat at lr_max, then linear over the last "
        "decay_fraction of the run); over steps, or over the time budget with "
        "train.schedule_over_time."
    )
    decay_fraction: float = Field(
        0.2, gt=0, le=1, description="With schedule=wsd, the last fraction of the run spent "
        "decaying."
    )
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW first-moment decay.")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW second-moment decay.")
    eps: float = Field(1e-8, gt=0, description="AdamW denominator epsilon.")
    muon_lr: float = Field(
        0.02, gt=0, description="Muon's peak learning rate (the schedule scales it like lr_max)."
    )
    muon_momentum: float = Field(0.95, ge=0, lt=1, description="Muon's Nesterov momentum.")
    muon_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Precision of Muon's Newton-Schulz matmuls (auto: bfloat16 on a "
        "CUDA GPU that supports it and on a CPU with AMX or AVX-512 BF16, where it is "
        "faster; float32 elsewhere, where bfloat16 matmuls are emulated and slower)."
    )
    embedding_lr: float | None = Field(
        None, gt=0, description="Peak learning rate of an untied token embedding, which AdamW "
        "updates (none: lr_max; the schedule scales it like lr_max). A std-1 table moves ~30x "
        "less per step, relative to its size, than a 0.03 output projection at the same rate; "
        "tied, the matrix is the projection too, so setting it with tie_embeddings is an error."
    )
    weight_decay: float = Field(0.1, ge=0, description="Decoupled weight decay.")
    grad_clip: float | None = Field(
        1.0, gt=0, description="Clip the global gradient L2 norm to this (None: no clipping)."
    )


class DataConfig(_Section):
    """Where the tokenized data lives (the context length is ``model.context_length``)."""

    train_path: Path = Field(
        description="Training tokens: a .bin written by `lmlab tokenizer encode`.")
    valid_path: Path = Field(
        description="Validation tokens: a .bin written by `lmlab tokenizer encode`.")
    sampling: Literal["random", "epochs"] = Field(
        "random", description="Training windows: 'random' starts anywhere, drawn with "
        "replacement; 'epochs' cuts each pass over the file into windows from a random offset "
        "and shuffles them, so every token is seen once per pass (without replacement)."
    )


class TrainConfig(_Section):
    """How long and how to train: batch, length, evaluation, checkpoints, device and precision."""

    batch_size: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(32, description=(
        "Sequences per micro-batch, per process (auto: the largest that fits in memory)."))
    grad_accum: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(1, description=(
        "Micro-batches per optimizer step (global batch: batch_size * grad_accum * world_size "
        "sequences; auto: batch_size in as few micro-batches as fit in memory)."))
    world_size: int = Field(
        1, gt=0, description="Processes training together: set from torchrun's WORLD_SIZE "
        "(an explicit value must match it). Each rank trains on its own batch_size * "
        "grad_accum slice of every global batch."
    )
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps to train for.")
    max_tokens: int | None = Field(
        None, gt=0, description="Training tokens to train for, instead of max_steps."
    )
    eval_interval: int = Field(
        500, ge=0, description="Evaluate every this many steps (0: only at the end)."
    )
    eval_batches: int = Field(
        0, ge=0, description="Validation batches per evaluation (0: the whole validation file, "
        "which also gives val/bpb)."
    )
    log_interval: int = Field(10, gt=0, description="Log training metrics every this many steps.")
    ckpt_interval: int = Field(
        1000, ge=0, description="Save a checkpoint every this many steps (0: only at the end)."
    )
    seed: int = Field(0, description="Seeds model initialisation and batch sampling.")
    peak_flops: float | None = Field(
        None, gt=0, description="Peak FLOP/s of the device, for train/mfu (default: the GPU's "
        "from lmlab/compute.py's table; on a CPU or MPS the only source, else no MFU)."
    )
    init_from: Path | None = Field(
        None, description="Start from the weights of a run directory, checkpoint or weights "
        "file (e.g. the output of `lmlab import`): fine-tuning; the optimizer starts fresh, and "
        "the model section must describe the same model."
    )
    device: str = Field(
        "auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="auto (cuda > mps > cpu), cpu, mps, cuda or cuda:N.",
    )
    dtype: Literal["auto", "native", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Autocast precision of the forward pass (auto: bfloat16 on GPUs "
        "that support it, float16 on CUDA GPUs without it (T4, V100, RTX 20xx), else float32; "
        "native: also bfloat16 on a CPU with AMX or AVX-512 BF16; float16 scales the loss "
        "dynamically, skips a step whose gradients overflow and logs train/loss_scale). "
        "Weights and optimizer state stay float32."
    )
    compile: bool = Field(False, description=(
        "Wrap the model in torch.compile (on a CPU it needs a C++ compiler; without one the "
        "run warns and trains uncompiled)."))
    dist_backend: Literal["auto", "nccl", "gloo"] = Field(
        "auto", description="Process-group backend under torchrun (auto: nccl on CUDA GPUs, "
        "gloo on CPUs)."
    )
    dist_timeout_s: float = Field(
        1800.0, gt=0, description="Under torchrun, how long a rank waits in a collective for "
        "the others before failing (covers the slowest evaluation or checkpoint)."
    )
    time_budget_s: float | None = Field(
        None, gt=0, description="Stop after this many seconds of training steps (evaluation "
        "and checkpointing do not count), with a final evaluation."
    )
    schedule_over_time: bool = Field(
        False, description="Run the cosine decay over time_budget_s instead of steps: the "
        "learning rate reaches optim.lr_min when the budget ends, or at the last step when a "
        "step or token limit ends the run first (warmup stays in steps)."
    )
    diverge_factor: float = Field(
        2.0, gt=1, description="Stop as diverged when the training loss exceeds this multiple "
        "of its first value (a non-finite loss always stops the run)."
    )
    diverge_rise: float = Field(
        1.0, gt=0, description="Stop as diverged when, after warmup, the smoothed training loss "
        "climbs this many nats above its best so far (a spike that recovers does not count; "
        "see lmlab/training/divergence.py for every rule)."
    )

    @property
    def known_batch_size(self) -> int:
        """``batch_size``, or a one-line error for ``auto``: only the run's device decides it."""
        if self.batch_size == "auto":
            raise ConfigError("train.batch_size=auto is chosen on the run's device as it starts: "
                              "give a number (lmlab estimate --gpu NAME prints what fits)")
        return self.batch_size

    @model_validator(mode="after")
    def _check_length(self) -> "TrainConfig":
        if self.max_steps is not None and self.max_tokens is not None:
            raise ValueError("set train.max_steps or train.max_tokens, not both")
        if self.max_steps is None and self.max_tokens is None and self.time_budget_s is None:
            raise ValueError(
                "set one of train.max_steps, train.max_tokens or train.time_budget_s"
            )
        if self.schedule_over_time and self.time_budget_s is None:
            raise ValueError("train.schedule_over_time needs train.time_budget_s")
        return self


class RunConfig(_Section):
    """Naming, resuming and tracking of the run directory ``<runs_dir>/<name>/``."""

    name: str = Field(
        "run", pattern=r"^[\w.\-]+(/[\w.\-]+)*$",
        description="Run directory name under runs_dir (letters, digits, _ . - and /).",
    )
    runs_dir: Path = Field(Path("runs"), description="Folder that holds run directories.")
    resume: Literal["never", "auto", "must"] = Field(
        "never", description="never: refuse an existing run directory; auto: resume from its "
        "last checkpoint if there is one, else start afresh; must: resume or fail (--resume)."
    )
    trackers: list[Literal["wandb", "tensorboard", "trackio"]] = Field(
        default_factory=list, description="Extra trackers besides metrics.jsonl (always "
        "written): wandb, tensorboard, trackio (a local dashboard: trackio show)."
    )
    wandb_project: str = Field("lmlab", description="wandb project name.")


class Config(_Section):
    """A whole training run: the five tables of a config TOML file."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig
    train: TrainConfig
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _check_embedding_lr(self) -> "Config":
        if self.optim.embedding_lr is not None and self.model.tie_embeddings:
            raise ValueError(
                "optim.embedding_lr sets an untied embedding's rate, but with "
                "model.tie_embeddings=true the shared matrix is also the output projection "
                "(trained at optim.lr_max): drop one of the two"
            )
        return self

    @property
    def tokens_per_step(self) -> int:
        """Tokens consumed by one optimizer step (all micro-batches of all ranks)."""
        train = self.train
        accum = 1 if train.grad_accum == "auto" else train.grad_accum  # batch_size: the step's
        return train.known_batch_size * accum * train.world_size * self.model.context_length

    @property
    def max_steps(self) -> int | None:
        """Optimizer steps to train for (from max_steps or max_tokens; None: time budget only)."""
        if self.train.max_tokens is not None:
            return -(-self.train.max_tokens // self.tokens_per_step)
        return self.train.max_steps

    @property
    def cosine_cycle_iters(self) -> int | None:
        """Step where the cosine reaches lr_min: ``optim.cosine_cycle_iters`` or max_steps."""
        if self.optim.cosine_cycle_iters is not None:
            return self.optim.cosine_cycle_iters
        return self.max_steps

    @property
    def run_dir(self) -> Path:
        return self.run.runs_dir / self.run.name
