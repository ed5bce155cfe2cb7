"""From-scratch building blocks of the LM (``nn.Parameter`` and tensor ops only)."""

from lmlab.nn.attention import (
    CausalSelfAttention,
    KVCache,
    LayerKVCache,
    RotaryPositionalEmbedding,
    scaled_dot_product_attention,
)
from lmlab.nn.layers import (
    Dropout,
    Embedding,
    FeedForward,
    Linear,
    NoNorm,
    RMSNorm,
    SwiGLU,
    silu,
    silu_gate,
    softmax,
)
from lmlab.nn.transformer import TransformerBlock, TransformerLM

__all__ = [
    "CausalSelfAttention",
    "Dropout",
    "Embedding",
    "FeedForward",
    "KVCache",
    "LayerKVCache",
    "Linear",
    "NoNorm",
    "RMSNorm",
    "RotaryPositionalEmbedding",
    "SwiGLU",
    "TransformerBlock",
    "TransformerLM",
    "scaled_dot_product_attention",
    "silu",
    "silu_gate",
    "softmax",
]
