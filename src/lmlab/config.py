"""Validated configuration: one pydantic model per config table.

Unknown keys and bad values are errors that name the key (``extra="forbid"`` everywhere), so a typo
in a TOML file or a CLI override never silently trains the wrong model.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
    return 4 * d_model


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
    ffn: Literal["swiglu", "silu"] = Field("swiglu", description="Gated SwiGLU or plain SiLU FFN.")
    tie_embeddings: bool = Field(False, description="Share token embedding and output weights.")

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
        return self

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads

    @property
    def ffn_width(self) -> int:
        """The FFN hidden width actually used (``d_ff`` or its default)."""
        return self.d_ff if self.d_ff is not None else default_d_ff(self.d_model, self.ffn)


class OptimConfig(_Section):
    """AdamW, the cosine learning-rate schedule and gradient clipping."""

    lr_max: float = Field(1e-3, gt=0, description="Peak learning rate, reached after warmup.")
    lr_min: float = Field(1e-4, ge=0, description="Final learning rate of the cosine schedule.")
    warmup_iters: int = Field(100, ge=0, description="Steps of linear warmup from 0 to lr_max.")
    cosine_cycle_iters: int | None = Field(
        None, ge=0, description="Step at which the cosine reaches lr_min (default: max_steps)."
    )
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW first-moment decay.")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW second-moment decay.")
    eps: float = Field(1e-8, gt=0, description="AdamW denominator epsilon.")
    weight_decay: float = Field(0.1, ge=0, description="Decoupled weight decay.")
    grad_clip: float | None = Field(
        1.0, gt=0, description="Clip the global gradient L2 norm to this (None: no clipping)."
    )
