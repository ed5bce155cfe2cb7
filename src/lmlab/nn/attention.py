"""Rotary position embedding, scaled dot-product attention and causal multi-head self-attention."""

import math

import torch
import torch.nn.functional as F  # only for the opt-in fused_attention fast path
from torch import Tensor, nn

from lmlab.nn.layers import Linear, RMSNorm, softmax


class RotaryPositionalEmbedding(nn.Module):
    """RoPE: rotate each adjacent pair ``(x[2i], x[2i+1])`` by the angle ``pos * theta^(-2i/d_k)``.

    The rotation makes the dot product of a query and a key depend only on their distance.
    cos/sin tables are precomputed for every position up to ``max_seq_len`` and kept as
    non-persistent buffers: they are derived, so they stay out of the state dict.
    A pair is a complex number ``x[2i] + i x[2i+1]`` and the rotation a multiplication by
    ``cos + i sin``: one complex multiply forward and one backward, instead of the half dozen
    real ops over strided halves that the written-out formula costs (measured:
    docs/benchmarks.md, "Model: one training step"). Under ``torch.compile`` the written-out
    formula runs instead (inductor fuses it into one kernel but has no code generation for
    complex numbers), and on devices other than CPUs and CUDA GPUs (complex support on e.g. MPS
    depends on the OS version).
    """

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None):
        super().__init__()
        if d_k % 2 != 0:
            raise ValueError(f"RoPE needs an even head size, got d_k={d_k}")
        self.max_seq_len = max_seq_len
        inv_freq = theta ** (-torch.arange(0, d_k, 2, device=device, dtype=torch.float32) / d_k)
        angles = torch.outer(
            torch.arange(max_seq_len, device=device, dtype=torch.float32), inv_freq
        )
        self.register_buffer("cos", angles.cos(), persistent=False)  # (max_seq_len, d_k / 2)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor, token_positions: Tensor) -> Tensor:
        """Rotate ``x`` of shape ``(..., seq, d_k)`` by the positions ``(..., seq)``.

        ``token_positions`` broadcasts against the leading dims of ``x`` (e.g. ``(seq,)`` for all
        batch rows and heads alike). Computed in float32, returned in ``x``'s dtype.
        """
        if token_positions.numel() > 0 and not torch.compiler.is_compiling():
            top = int(token_positions.max())
            if top >= self.max_seq_len:
                raise ValueError(f"position {top} is beyond RoPE's max_seq_len {self.max_seq_len}")
        cos = self.cos[token_positions].float()  # (..., seq, d_k / 2)
        sin = self.sin[token_positions].float()
        if torch.compiler.is_compiling() or x.device.type not in ("cpu", "cuda"):
            x_even, x_odd = x.float().unflatten(-1, (-1, 2)).unbind(-1)
            pairs = (x_even * cos - x_odd * sin, x_even * sin + x_odd * cos)
            return torch.stack(pairs, dim=-1).flatten(-2).to(x.dtype)
        pairs = torch.view_as_complex(x.float().contiguous().unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2).to(x.dtype)


def scaled_dot_product_attention(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
) -> Tensor:
    """``softmax(Q K^T / sqrt(d_k)) V`` over any leading batch dims.

    Shapes: query ``(..., q, d_k)``, key ``(..., k, d_k)``, value ``(..., k, d_v)``,
    mask ``(..., q, k)`` boolean with True where a query may attend; returns ``(..., q, d_v)``.
    The softmax runs in float32 (as fused kernels do): summing hundreds of bf16 terms loses digits.
    """
    # Scaling the queries rather than the scores: (q, d_k) is smaller than (q, k).
    scores = (query * (1.0 / math.sqrt(query.shape[-1]))) @ key.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return softmax(scores.float(), dim=-1).to(value.dtype) @ value


class _CausalAttention(torch.autograd.Function):
    """Causal ``softmax(Q K^T / sqrt(d_k)) V`` with its gradient written out, in query blocks.

    Shapes: query ``(..., seq, d)``, key and value ``(..., past + seq, d)``; returns
    ``(..., seq, d)``. The queries are the last ``seq`` positions: query ``i`` sees keys up to
    ``past + i`` (``past = 0`` in training; the cached tokens when decoding).
    Why: the ``(seq, seq)`` scores dominate attention's cost. Autograd over
    :func:`scaled_dot_product_attention` keeps a masked copy, the softmax output and the mask,
    and runs a pass per op; here masking and softmax work in place and only the probabilities
    are kept. Queries go in blocks of ``BLOCK`` rows and each block meets only the keys up to
    its last position, which skips most of the fully masked upper triangle.
    On a CPU it pays in speed and in memory against autograd over the formula (measured:
    docs/benchmarks.md, "The architecture change (issue 16), before and after; what each
    hand-written backward pays").
    Backward per block: ``dV = P^T dO``, ``dS = P * (dO V^T - rowsum(dO * O))`` (the rowsum
    equals ``rowsum(P * dP)``), ``dQ = dS K / sqrt(d)``, ``dK = dS^T Q / sqrt(d)``.
    Probabilities stay float32 (as in fused kernels) even for bf16 inputs.
    """

    BLOCK = 64

    @staticmethod
    def _blocks(seq: int) -> list[tuple[int, int]]:
        """``(start, end)`` query rows of each block; block ``[start, end)`` sees keys
        ``< past + end``."""
        block = _CausalAttention.BLOCK
        return [(i, min(i + block, seq)) for i in range(0, seq, block)]

    @staticmethod
    def forward(ctx, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        seq, scale = query.shape[-2], 1.0 / math.sqrt(query.shape[-1])
        past = key.shape[-2] - seq
        scaled_query = query * scale
        outs, probs = [], []
        for start, end in _CausalAttention._blocks(seq):
            scores = scaled_query[..., start:end, :] @ key[..., :past + end, :].transpose(-2, -1)
            p = scores.float()  # (..., end - start, past + end)
            # Only the block's own square, keys [past + start, past + end), holds future keys.
            future = torch.ones(end - start, end - start, dtype=torch.bool, device=query.device)
            p[..., past + start:].masked_fill_(future.triu_(1), float("-inf"))
            p = p.sub_(p.amax(dim=-1, keepdim=True)).exp_()
            p = p.div_(p.sum(dim=-1, keepdim=True))
            outs.append(p.to(value.dtype) @ value[..., :past + end, :])
            probs.append(p)
        out = torch.cat(outs, dim=-2)
        ctx.save_for_backward(query, key, value, out, *probs)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        query, key, value, out, *probs = ctx.saved_tensors
        seq, scale = query.shape[-2], 1.0 / math.sqrt(query.shape[-1])
        past = key.shape[-2] - seq
        # rowsum(dO * O), (..., seq, 1): the softmax backward's sum without a (seq, seq) pass
        row_dot = (grad_out.float() * out.float()).sum(dim=-1, keepdim=True)
        grad_q, grad_k, grad_v = [], None, None
        # Last block first: it sees every key, so it sets dK and dV and the others add to them.
        blocks = _CausalAttention._blocks(seq)
        for (start, end), p in reversed(list(zip(blocks, probs, strict=True))):
            keys = slice(0, past + end)
            d_out = grad_out[..., start:end, :]
            block_grad_v = p.to(value.dtype).transpose(-2, -1) @ d_out
            d_scores = (d_out @ value[..., keys, :].transpose(-2, -1)).float()
            d_scores = d_scores.sub_(row_dot[..., start:end, :]).mul_(p).to(query.dtype)
            grad_q.append(d_scores @ key[..., keys, :])
            block_grad_k = d_scores.transpose(-2, -1) @ query[..., start:end, :]
            if grad_k is None:
                grad_k, grad_v = block_grad_k, block_grad_v
            else:
                grad_k[..., keys, :] += block_grad_k
                grad_v[..., keys, :] += block_grad_v
        return torch.cat(grad_q[::-1], dim=-2).mul_(scale), grad_k.mul_(scale), grad_v


def masked_causal_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """The plain formula: :func:`scaled_dot_product_attention` with the causal mask built out.

    Shapes as :func:`causal_attention`; query ``i`` sees keys up to ``past + i``.
    """
    seq, keys = query.shape[-2], key.shape[-2]
    mask = torch.ones(seq, keys, dtype=torch.bool, device=query.device).tril_(keys - seq)
    return scaled_dot_product_attention(query, key, value, mask)


def causal_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """``scaled_dot_product_attention`` with the causal mask, faster (see _CausalAttention).

    Shapes: query ``(..., seq, d)``, key and value ``(..., past + seq, d)`` (the queries are the
    last ``seq`` positions); returns ``(..., seq, d)``.
    Under ``torch.compile`` the plain formula runs instead: inductor fuses the mask and the
    softmax into its kernels itself, which the blocked Function would stop, so compiled the
    formula is the faster one on a GPU and, on a CPU, faster than PyTorch's flash kernel
    (``fused_attention``) too (measured: docs/benchmarks.md, "The GPU check", and
    "`tinystories-cpu` in ten minutes", "lmlab's own attention instead of the flash kernel,
    compiled").
    """
    if torch.compiler.is_compiling():
        return masked_causal_attention(query, key, value)
    return _CausalAttention.apply(query, key, value)


class LayerKVCache:
    """Keys and values of one attention layer for the tokens decoded so far.

    Shapes: keys/values ``(batch, heads, seq_so_far, d_head)``; grows by concatenation.
    """

    def __init__(self) -> None:
        self.keys: Tensor | None = None
        self.values: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """Add the new tokens' keys/values and return everything cached, new tokens last."""
        if self.keys is None:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat((self.keys, keys), dim=-2)
            self.values = torch.cat((self.values, values), dim=-2)
        return self.keys, self.values


class KVCache:
    """One :class:`LayerKVCache` per layer; ``length`` is the number of tokens already decoded.

    Passing the same cache to successive ``TransformerLM`` calls decodes incrementally: each
    call attends to everything cached before it and only computes the new tokens.
    """

    def __init__(self, num_layers: int) -> None:
        self.layers = [LayerKVCache() for _ in range(num_layers)]

    @property
    def length(self) -> int:
        return self.layers[0].length


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where each token attends only to itself and earlier tokens.

    Shapes: ``(batch, seq, d_model) -> (batch, seq, d_model)``;
    per head ``(batch, heads, seq, d_head)``.
    ``rope=None`` gives NoPE (no position information beyond the causal mask); a model passes
    every layer the same ``rope``, so its tables exist once. No mask is kept: the causal mask is
    the structure of :func:`causal_attention`, which serves training and cached decoding alike.
    ``fused=True`` is the opt-in fast path: PyTorch's fused kernel (flash attention on CPUs and
    GPUs) computes the same function without materialising the ``(seq, seq)`` scores; tests
    check that both agree, gradients included.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        rope: RotaryPositionalEmbedding | None = None,
        device=None,
        dtype=None,
        fused: bool = False,
        qk_norm: bool = False,
        value_residual: bool = False,
    ):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.q_norm = RMSNorm(d_model // num_heads, device=device, dtype=dtype) if qk_norm else None
        self.k_norm = RMSNorm(d_model // num_heads, device=device, dtype=dtype) if qk_norm else None
        self.value_mix = (nn.Parameter(torch.full((), 0.5, device=device, dtype=dtype))
                          if value_residual else None)
        self.q_proj = Linear(d_model, d_model, device, dtype)
        self.k_proj = Linear(d_model, d_model, device, dtype)
        self.v_proj = Linear(d_model, d_model, device, dtype)
        self.output_proj = Linear(d_model, d_model, device, dtype)
        self.rope = rope
        self.fused = fused

    def _split_heads(self, x: Tensor) -> Tensor:
        """``(batch, seq, d_model) -> (batch, heads, seq, d_head)``."""
        return x.unflatten(-1, (self.num_heads, -1)).transpose(-3, -2)

    def forward(
        self,
        x: Tensor,
        token_positions: Tensor | None = None,
        cache: LayerKVCache | None = None,
        first_values: list[Tensor] | None = None,
    ) -> Tensor:
        """Attend over ``x`` (plus any cached tokens before it).

        ``token_positions`` ``(seq,)`` or ``(batch, seq)`` defaults to ``past, past+1, ...`` where
        ``past`` is the number of cached tokens. ``first_values`` (value residual): empty in the
        first block, which appends its values ``(batch, heads, seq, d_head)``; a later block
        mixes them into its own before they are cached.
        """
        seq_len = x.shape[-2]
        past = cache.length if cache is not None else 0
        if token_positions is None:
            token_positions = torch.arange(past, past + seq_len, device=x.device)
        query, key, value = (
            self._split_heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        if first_values is not None:
            if not first_values:
                first_values.append(value)
            elif self.value_mix is not None:
                value = self.value_mix * value + (1 - self.value_mix) * first_values[0]
        if self.q_norm is not None:  # QK-norm: bounded logits, so higher rates stay stable
            query, key = self.q_norm(query), self.k_norm(key)
        if self.rope is not None:
            positions = (
                token_positions if token_positions.dim() == 1 else token_positions.unsqueeze(-2)
            )
            query, key = self.rope(query, positions), self.rope(key, positions)
        if cache is not None:
            key, value = cache.append(key, value)
        if not self.fused:
            out = causal_attention(query, key, value)
        elif not past:  # the plain causal mask, which the kernel knows
            out = F.scaled_dot_product_attention(query, key, value, is_causal=True)
        else:  # queries see the cached keys too: query i sees keys up to past + i
            mask = torch.ones(seq_len, past + seq_len, dtype=torch.bool, device=x.device)
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask.tril_(past))
        return self.output_proj(out.transpose(-3, -2).flatten(-2))
