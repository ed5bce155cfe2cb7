"""RoPE, scaled dot-product attention and causal self-attention against references."""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from lmlab.nn import (
    CausalSelfAttention,
    LayerKVCache,
    RotaryPositionalEmbedding,
    scaled_dot_product_attention,
)
from lmlab.nn.attention import causal_attention


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def rope_by_complex_numbers(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Straightforward RoPE: each pair (x[2i], x[2i+1]) is a complex number times e^{i pos w_i}."""
    d_k = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)
    angles = positions.to(torch.float64).unsqueeze(-1) * freqs
    pairs = torch.view_as_complex(
        x.to(torch.float64).reshape(*x.shape[:-1], d_k // 2, 2).contiguous()
    )
    rotated = torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles))
    return rotated.reshape(x.shape).to(x.dtype)


def test_rope_matches_complex_rotation_with_arbitrary_positions():
    rope = RotaryPositionalEmbedding(theta=10000.0, d_k=16, max_seq_len=64)
    x = torch.randn(2, 3, 10, 16, requires_grad=True)
    positions = torch.randint(0, 64, (2, 3, 10))
    ours, expected = rope(x, positions), rope_by_complex_numbers(x, positions, 10000.0)
    assert_close(ours, expected)
    weights = torch.randn_like(ours)  # the gradient too (a rotation's is the inverse rotation)
    assert_close(torch.autograd.grad((ours * weights).sum(), x)[0],
                 torch.autograd.grad((expected * weights).sum(), x)[0])


def test_rope_broadcasts_positions_over_leading_dims_and_keeps_state_dict_empty():
    rope = RotaryPositionalEmbedding(theta=500.0, d_k=8, max_seq_len=32)
    x = torch.randn(4, 2, 12, 8)
    positions = torch.arange(12)
    assert_close(rope(x, positions), rope_by_complex_numbers(x, positions.expand(4, 2, 12), 500.0))
    assert rope.state_dict() == {}


def test_rope_rejects_positions_beyond_max_seq_len():
    rope = RotaryPositionalEmbedding(theta=10000.0, d_k=8, max_seq_len=16)
    with pytest.raises(ValueError, match="max_seq_len 16"):
        rope(torch.randn(1, 17, 8), torch.arange(17))


def test_rope_rejects_odd_head_size():
    with pytest.raises(ValueError, match="even head size"):
        RotaryPositionalEmbedding(theta=10000.0, d_k=7, max_seq_len=16)


def test_sdpa_without_mask_matches_torch():
    q, k, v = torch.randn(2, 3, 7, 16), torch.randn(2, 3, 9, 16), torch.randn(2, 3, 9, 8)
    assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_sdpa_with_boolean_mask_and_extra_batch_dims_matches_torch():
    q, k, v = torch.randn(2, 2, 3, 7, 16), torch.randn(2, 2, 3, 9, 16), torch.randn(2, 2, 3, 9, 8)
    mask = torch.rand(7, 9) > 0.3
    mask[:, 0] = True  # every query attends somewhere
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(scaled_dot_product_attention(q, k, v, mask), expected)


def test_sdpa_causal_matches_torch_is_causal():
    q, k, v = torch.randn(3, 4, 12, 8), torch.randn(3, 4, 12, 8), torch.randn(3, 4, 12, 8)
    mask = torch.ones(12, 12, dtype=torch.bool).tril()
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert_close(scaled_dot_product_attention(q, k, v, mask), expected)


@pytest.mark.parametrize(
    ("shape", "dtype", "tol"),
    [
        ((2, 3, 1, 8), torch.float32, 1e-5),  # a single token
        ((2, 3, 12, 8), torch.float32, 1e-5),  # shorter than one query block
        ((1, 2, 130, 16), torch.float32, 1e-5),  # not a multiple of the block size
        ((2, 2, 128, 16), torch.float32, 1e-5),  # exactly two blocks
        ((2, 2, 3, 70, 8), torch.float32, 1e-5),  # extra batch dims
        ((2, 2, 100, 16), torch.bfloat16, 3e-2),
    ],
)
def test_causal_attention_output_and_gradients_match_torch_is_causal(shape, dtype, tol):
    q, k, v = (torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3))
    out = causal_attention(q, k, v)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    # the reference runs in float32 so that bf16 is compared against the exact function
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    expected = F.scaled_dot_product_attention(q32, k32, v32, is_causal=True)
    expected_grads = torch.autograd.grad(expected, (q32, k32, v32), grad_out.float())
    assert out.dtype == dtype
    assert_close(out.float(), expected, atol=tol, rtol=tol)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert grad.dtype == dtype
        assert_close(grad.float(), expected_grad, atol=tol, rtol=tol)


def _reference_attention(attn: CausalSelfAttention, x: torch.Tensor, theta: float | None):
    batch, seq, d_model = x.shape
    heads = attn.num_heads

    def split(t):
        return t.view(batch, seq, heads, -1).transpose(1, 2)

    q, k, v = (split(F.linear(x, p.weight)) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    if theta is not None:
        positions = torch.arange(seq)
        q, k = (
            rope_by_complex_numbers(q, positions, theta),
            rope_by_complex_numbers(k, positions, theta),
        )
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(out.transpose(1, 2).reshape(batch, seq, d_model), attn.output_proj.weight)


@pytest.mark.parametrize("use_rope", [True, False])
def test_causal_self_attention_matches_reference(use_rope):
    rope = RotaryPositionalEmbedding(10000.0, 8, 32) if use_rope else None
    attn = CausalSelfAttention(d_model=32, num_heads=4, rope=rope)
    x = torch.randn(2, 20, 32, requires_grad=True)
    out, expected = attn(x), _reference_attention(attn, x, 10000.0 if use_rope else None)
    assert_close(out, expected)
    grad_out = torch.randn_like(out)
    assert_close(torch.autograd.grad(out, x, grad_out), torch.autograd.grad(expected, x, grad_out))


def test_causal_self_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        CausalSelfAttention(d_model=30, num_heads=4)


def test_sdpa_in_bfloat16_stays_close_to_float32():
    q, k, v = (torch.randn(2, 4, 64, 16) for _ in range(3))
    mask = torch.ones(64, 64, dtype=torch.bool).tril()
    low = scaled_dot_product_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask)
    assert low.dtype == torch.bfloat16
    assert_close(low.float(), scaled_dot_product_attention(q, k, v, mask), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("use_rope", [True, False])
def test_fused_attention_computes_the_same_function_and_gradients(use_rope):
    def build(fused: bool) -> CausalSelfAttention:
        torch.manual_seed(0)
        rope = RotaryPositionalEmbedding(10000.0, 8, 32) if use_rope else None
        return CausalSelfAttention(32, 4, rope, fused=fused)

    ours, fused = build(False), build(True)
    x = torch.randn(2, 20, 32, requires_grad=True)
    out_ours, out_fused = ours(x), fused(x)
    assert_close(out_fused, out_ours)
    (grad_ours,) = torch.autograd.grad(out_ours.square().sum(), x)
    (grad_fused,) = torch.autograd.grad(out_fused.square().sum(), x)
    assert_close(grad_fused, grad_ours)
    for a, b in zip(ours.parameters(), fused.parameters(), strict=True):
        (ga,) = torch.autograd.grad(ours(x).sum(), a)
        (gb,) = torch.autograd.grad(fused(x).sum(), b)
        assert_close(gb, ga, rtol=1e-4, atol=1e-5)


def test_fused_attention_with_kv_cache_matches_full_forward():
    attn = CausalSelfAttention(32, 4, RotaryPositionalEmbedding(10000.0, 8, 32), fused=True)
    x = torch.randn(2, 12, 32)
    cache = LayerKVCache()
    pieces = [attn(x[:, :5], cache=cache)] + [
        attn(x[:, t : t + 1], cache=cache) for t in range(5, 12)
    ]
    assert_close(torch.cat(pieces, dim=1), attn(x), rtol=1e-4, atol=1e-5)


def test_rope_written_out_for_torch_compile_is_the_same_rotation(monkeypatch):
    """Under torch.compile RoPE uses real arithmetic (inductor has no complex numbers)."""
    rope = RotaryPositionalEmbedding(theta=10000.0, d_k=16, max_seq_len=64)
    x = torch.randn(2, 3, 10, 16, requires_grad=True)
    positions = torch.randint(0, 64, (2, 3, 10))
    weights = torch.randn(2, 3, 10, 16)
    eager = rope(x, positions)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    written_out = rope(x, positions)
    assert_close(written_out, eager)
    assert_close(torch.autograd.grad((written_out * weights).sum(), x)[0],
                 torch.autograd.grad((eager * weights).sum(), x)[0])


def test_rope_accepts_any_strides_and_keeps_the_dtype():
    """The complex view needs contiguous pairs; slices and transposes must work all the same."""
    rope = RotaryPositionalEmbedding(10000.0, 8, 16)
    wide = torch.randn(2, 16, 9)
    sliced = wide[..., 1:]  # odd storage offset and strides
    positions = torch.arange(16)
    assert_close(rope(sliced, positions), rope(sliced.contiguous(), positions))
    half = rope(sliced.bfloat16(), positions)
    assert half.dtype == torch.bfloat16
    assert_close(half.float(), rope(sliced.bfloat16().float(), positions), atol=0.02, rtol=0.02)


@pytest.mark.parametrize("compiling", [False, True], ids=["function", "formula-under-compile"])
@pytest.mark.parametrize(("past", "seq"), [(0, 70), (5, 1), (7, 3), (40, 70), (64, 64)])
def test_causal_attention_after_cached_keys_matches_torch_with_the_offset_mask(
    past, seq, compiling, monkeypatch
):
    """Decoding with a KV cache: the queries are the last `seq` of `past + seq` positions.
    Under torch.compile the plain formula runs instead of the blocked Function: both must be
    torch's attention with the offset mask, gradients included."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: compiling)
    q = torch.randn(2, 3, seq, 8, requires_grad=True)
    k, v = (torch.randn(2, 3, past + seq, 8, requires_grad=True) for _ in range(2))
    mask = torch.ones(seq, past + seq, dtype=torch.bool).tril(past)
    out = causal_attention(q, k, v)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert_close(out, expected)
    grad_out = torch.randn_like(out)
    for ours, theirs in zip(torch.autograd.grad(out, (q, k, v), grad_out),
                            torch.autograd.grad(expected, (q, k, v), grad_out), strict=True):
        assert_close(ours, theirs)


def test_own_attention_with_kv_cache_matches_full_forward():
    attn = CausalSelfAttention(32, 4, RotaryPositionalEmbedding(10000.0, 8, 32))
    x = torch.randn(2, 12, 32)
    cache = LayerKVCache()
    pieces = [attn(x[:, :5], cache=cache)] + [
        attn(x[:, t : t + 1], cache=cache) for t in range(5, 12)
    ]
    assert_close(torch.cat(pieces, dim=1), attn(x), rtol=1e-4, atol=1e-5)
