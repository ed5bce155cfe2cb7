"""The Llama-style Transformer LM, with the ablation switches of :class:`~lmlab.config.ModelConfig`.

Read top to bottom: a block is attention then feed-forward, each wrapped in a residual connection
and a norm (before the sublayer for ``pre``, after the residual add for ``post``); the LM embeds
token ids, runs the blocks, normalises and projects back onto the vocabulary.
"""

import torch
from torch import Tensor, nn

from lmlab.config import ModelConfig
from lmlab.nn.attention import (
    CausalSelfAttention,
    KVCache,
    LayerKVCache,
    RotaryPositionalEmbedding,
)
from lmlab.nn.layers import (
    Dropout,
    Embedding,
    FeedForward,
    Linear,
    NoNorm,
    RMSNorm,
    SwiGLU,
)


def _make_norm(config: ModelConfig, device, dtype) -> nn.Module:
    return RMSNorm(config.d_model, device=device, dtype=dtype) if config.norm == "rms" else NoNorm()


class TransformerBlock(nn.Module):
    """Attention + feed-forward with residuals. Shapes: ``(batch, seq, d_model)`` in and out.

    ``rope`` is the model's one rotary embedding (None for NoPE), shared by every block;
    ``first`` marks block 0, whose values the others mix in under ``value_residual``.
    """

    def __init__(self, config: ModelConfig, rope: RotaryPositionalEmbedding | None = None,
                 device=None, dtype=None, first: bool = False):
        super().__init__()
        self.pre_norm = config.norm_position == "pre"
        self.ln1 = _make_norm(config, device, dtype)
        self.attn = CausalSelfAttention(
            config.d_model, config.num_heads, rope, device, dtype, fused=config.fused_attention,
            qk_norm=config.qk_norm, value_residual=config.value_residual and not first,
        )
        self.ln2 = _make_norm(config, device, dtype)
        if config.ffn == "swiglu":
            self.ffn = SwiGLU(config.d_model, config.ffn_width, device, dtype)
        else:
            self.ffn = FeedForward(config.d_model, config.ffn_width, config.ffn, device, dtype)
        self.dropout = Dropout(config.dropout)  # on each sublayer's output, before the residual add

    def forward(
        self,
        x: Tensor,
        token_positions: Tensor | None = None,
        cache: LayerKVCache | None = None,
        first_values: list[Tensor] | None = None,
    ) -> Tensor:
        """``first_values`` (with ``value_residual``): empty in the first block, which puts its
        values there; later blocks mix them into theirs."""
        if self.pre_norm:
            x = x + self.dropout(self.attn(self.ln1(x), token_positions, cache, first_values))
            return x + self.dropout(self.ffn(self.ln2(x)))
        x = self.ln1(x + self.dropout(self.attn(x, token_positions, cache, first_values)))
        return self.ln2(x + self.dropout(self.ffn(x)))


class TransformerLM(nn.Module):
    """Decoder-only language model: token ids ``(batch, seq)`` -> logits ``(batch, seq, vocab)``.

    With ``tie_embeddings`` the output projection reuses the embedding matrix (one parameter,
    listed under both state-dict names); it is then initialised like a ``Linear``, since the
    output logits are far more sensitive to its scale than the normalised blocks are. Untied,
    the embedding starts at std ``embedding_std`` (1 unless set): a table that starts 30 times
    larger than the tied one moves 30 times less, relative to its size, under the same AdamW rate.
    ``ln_final`` is a no-op under ``norm = "none"``. The RoPE tables are built once and shared by
    every layer (they depend only on the positions and the head size). With ``unet_skips``
    block ``i`` of the last ``num_layers // 2`` adds to its input the output of its mirror block
    ``num_layers - 1 - i``, scaled by a learned weight (init 1); with ``logit_softcap`` the
    logits are ``cap * tanh(logits / cap)``, bounded by ``cap``.
    """

    def __init__(self, config: ModelConfig, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.token_embeddings = Embedding(
            config.vocab_size, config.d_model, device, dtype,
            std=config.embedding_std if config.embedding_std is not None else 1.0,
        )
        self.embedding_dropout = Dropout(config.dropout)
        rope = None
        if config.position == "rope":
            rope = RotaryPositionalEmbedding(
                config.rope_theta, config.d_head, config.context_length, device
            )
        self.layers = nn.ModuleList(
            TransformerBlock(config, rope, device, dtype, first=i == 0)
            for i in range(config.num_layers)
        )
        self.ln_final = _make_norm(config, device, dtype)
        self.lm_head = Linear(config.d_model, config.vocab_size, device, dtype)
        if config.tie_embeddings:
            self.token_embeddings.weight = self.lm_head.weight
        self.skip_weights = (nn.Parameter(torch.ones(config.num_layers // 2, device=device,
                                                     dtype=dtype))
                             if config.unet_skips else None)
        if config.zero_init_proj:  # each block starts as the identity on the residual stream
            with torch.no_grad():
                for layer in self.layers:
                    layer.attn.output_proj.weight.zero_()
                    layer.ffn.w2.weight.zero_()

    def forward(self, token_ids: Tensor, kv_cache: KVCache | None = None) -> Tensor:
        """Logits for every position; with ``kv_cache``, ``token_ids`` follow the cached tokens."""
        past = kv_cache.length if kv_cache is not None else 0
        seq_len = token_ids.shape[-1]
        if past + seq_len > self.config.context_length:
            raise ValueError(
                f"sequence of {past + seq_len} tokens exceeds model.context_length "
                f"({self.config.context_length})"
            )
        positions = torch.arange(past, past + seq_len, device=token_ids.device)
        x = self.embedding_dropout(self.token_embeddings(token_ids))
        skips: list[Tensor] = []  # the first half's outputs, for the U-net skips
        first_values: list[Tensor] = []  # block 0's attention values, for the value residual
        half = len(self.layers) // 2
        for i, layer in enumerate(self.layers):
            if self.skip_weights is not None and i >= len(self.layers) - half:
                x = x + self.skip_weights[len(self.layers) - 1 - i] * skips.pop()
            x = layer(x, positions, kv_cache.layers[i] if kv_cache is not None else None,
                      first_values if self.config.value_residual else None)
            if self.skip_weights is not None and i < half:
                skips.append(x)
        logits = self.lm_head(self.ln_final(x))
        cap = self.config.logit_softcap
        return logits if cap is None else cap * torch.tanh(logits / cap)

    def new_kv_cache(self) -> KVCache:
        """An empty cache for incremental decoding with this model."""
        return KVCache(len(self.layers))

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of distinct parameters (a tied matrix counts once).

        ``non_embedding=True`` leaves out the token embedding and output projection (Kaplan et
        al.'s N, the count that scaling laws are stated in).
        """
        params = {id(p): p for p in self.parameters()}
        if non_embedding:
            for weight in (self.token_embeddings.weight, self.lm_head.weight):
                params.pop(id(weight), None)
        return sum(p.numel() for p in params.values())

    def flops_per_token(self, seq_len: int | None = None, training: bool = True) -> float:
        """Matmul FLOPs per token, for MFU: ``2 N`` forward (``6 N`` with backward) over every
        weight used as a matrix (blocks and output projection; the embedding is a lookup), plus
        attention's ``Q K^T`` and ``A V`` at ``2 * 2 * layers * seq * d_model`` forward (PaLM's
        count, full square). ``seq_len`` defaults to the context length.
        """
        seq_len = seq_len or self.config.context_length
        matmul_params = self.num_parameters(non_embedding=True) + self.lm_head.weight.numel()
        matmul_params -= sum(p.numel() for p in self.parameters() if p.dim() == 1)  # norm gains
        forward = 2 * matmul_params + 4 * self.config.num_layers * seq_len * self.config.d_model
        return 3.0 * forward if training else float(forward)
