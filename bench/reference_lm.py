"""A Llama-style LM written with PyTorch built-ins: lmlab is checked and timed against it.

It uses ``nn.Embedding``, ``nn.Linear``, ``nn.RMSNorm``, ``F.scaled_dot_product_attention`` and
``F.silu`` (the path a careful user of PyTorch would write), and the same module names as
``lmlab.nn.TransformerLM``, so ``reference.load_state_dict(lmlab_model.state_dict())`` gives both
the same weights. Pre-norm, RMSNorm, RoPE on adjacent pairs, SwiGLU; optional weight tying.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmlab.config import ModelConfig


def rope_tables(theta: float, d_head: int, max_seq_len: int, device=None) -> tuple[Tensor, Tensor]:
    """cos/sin tables ``(max_seq_len, d_head / 2)`` for rotating adjacent pairs."""
    inv_freq = 1.0 / theta ** (torch.arange(0, d_head, 2, device=device).float() / d_head)
    angles = torch.outer(torch.arange(max_seq_len, device=device).float(), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs ``(x[2i], x[2i+1])`` of ``x (..., seq, d_head)`` by the angles in cos/sin."""
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


class ReferenceAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        d = config.d_model
        self.num_heads = config.num_heads
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.output_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        batch, seq, d_model = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(batch, seq, self.num_heads, -1).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.output_proj(out.transpose(1, 2).reshape(batch, seq, d_model))


class ReferenceFFN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.w1 = nn.Linear(config.d_model, config.ffn_width, bias=False)
        self.w2 = nn.Linear(config.ffn_width, config.d_model, bias=False)
        self.w3 = nn.Linear(config.d_model, config.ffn_width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class ReferenceBlock(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln1 = nn.RMSNorm(config.d_model, eps=1e-5)
        self.attn = ReferenceAttention(config)
        self.ln2 = nn.RMSNorm(config.d_model, eps=1e-5)
        self.ffn = ReferenceFFN(config)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x), cos, sin)
        return x + self.ffn(self.ln2(x))


class ReferenceLM(nn.Module):
    """Token ids ``(batch, seq)`` -> logits ``(batch, seq, vocab)``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.token_embeddings = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(ReferenceBlock(config) for _ in range(config.num_layers))
        self.ln_final = nn.RMSNorm(config.d_model, eps=1e-5)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.token_embeddings.weight = self.lm_head.weight
        cos, sin = rope_tables(config.rope_theta, config.d_head, config.context_length)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, token_ids: Tensor) -> Tensor:
        seq = token_ids.shape[1]
        cos, sin = self.cos[:seq], self.sin[:seq]
        x = self.token_embeddings(token_ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.ln_final(x))
