"""The leaderboard switches of the model, each against a reference written here with PyTorch
built-ins (gradients included), with the KV cache, and beside the ablation switches."""

import pytest
import torch
import torch.nn.functional as F

from lmlab.config import ModelConfig
from lmlab.nn import CausalSelfAttention, FeedForward, TransformerLM
from lmlab.nn.attention import RotaryPositionalEmbedding


def _rope_reference(x: torch.Tensor, theta: float = 10_000.0) -> torch.Tensor:
    """RoPE on adjacent pairs, as complex multiplication. ``x``: (batch, heads, seq, d_head)."""
    seq, d = x.shape[-2], x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2).float() / d)
    angles = torch.outer(torch.arange(seq).float(), freqs)
    rotated = torch.view_as_complex(x.float().reshape(*x.shape[:-1], d // 2, 2)) * torch.polar(
        torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).reshape(x.shape)


def test_relu2_ffn_and_its_gradient() -> None:
    torch.manual_seed(0)
    ffn = FeedForward(16, 64, "relu2")
    x = torch.randn(2, 5, 16, requires_grad=True)
    ours = ffn(x)
    theirs = F.linear(F.relu(F.linear(x, ffn.w1.weight)) ** 2, ffn.w2.weight)
    torch.testing.assert_close(ours, theirs)
    grad = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, (x, ffn.w1.weight), grad)
    theirs_grads = torch.autograd.grad(theirs, (x, ffn.w1.weight), grad)
    for a, b in zip(ours_grads, theirs_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_qk_norm_attention_and_its_gradient() -> None:
    torch.manual_seed(0)
    d, heads, seq = 32, 4, 7
    rope = RotaryPositionalEmbedding(10_000.0, d // heads, 16)
    attn = CausalSelfAttention(d, heads, rope, qk_norm=True)
    with torch.no_grad():
        attn.q_norm.weight.uniform_(0.5, 1.5)
        attn.k_norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, seq, d, requires_grad=True)

    def reference(x: torch.Tensor) -> torch.Tensor:
        split = [F.linear(x, p.weight).unflatten(-1, (heads, -1)).transpose(1, 2)
                 for p in (attn.q_proj, attn.k_proj, attn.v_proj)]
        q = F.rms_norm(split[0], (d // heads,), attn.q_norm.weight, eps=1e-5)
        k = F.rms_norm(split[1], (d // heads,), attn.k_norm.weight, eps=1e-5)
        out = F.scaled_dot_product_attention(_rope_reference(q), _rope_reference(k), split[2],
                                             is_causal=True)
        return F.linear(out.transpose(1, 2).flatten(-2), attn.output_proj.weight)

    ours, theirs = attn(x), reference(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    grad = torch.randn_like(ours)
    params = (x, attn.q_norm.weight, attn.k_proj.weight)
    for a, b in zip(torch.autograd.grad(ours, params, grad),
                    torch.autograd.grad(theirs, params, grad), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _model(**switches) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(vocab_size=50, context_length=16, d_model=32, num_layers=2,
                                     num_heads=4, **switches))


def test_logit_softcap_caps_the_logits_smoothly() -> None:
    ids = torch.randint(0, 50, (2, 16))
    capped, plain = _model(logit_softcap=0.5), _model()
    raw = plain(ids)
    torch.testing.assert_close(capped(ids), 0.5 * torch.tanh(raw / 0.5))
    assert capped(ids).abs().max() < 0.5


def test_zero_init_projections_start_every_block_as_the_identity() -> None:
    model = _model(zero_init_proj=True)
    for layer in model.layers:
        assert not layer.attn.output_proj.weight.any() and not layer.ffn.w2.weight.any()
    ids = torch.randint(0, 50, (2, 16))
    logits = model(ids)  # = head(norm(embedding)): the blocks add nothing yet
    expected = model.lm_head(model.ln_final(model.token_embeddings(ids)))
    torch.testing.assert_close(logits, expected)
    logits.logsumexp(-1).sum().backward()
    assert model.layers[0].ffn.w2.weight.grad.abs().sum() > 0  # and they do learn


@pytest.mark.parametrize("switches", [
    {"ffn": "relu2", "qk_norm": True, "logit_softcap": 15.0, "zero_init_proj": True},
    {"unet_skips": True, "value_residual": True, "qk_norm": True},
    {"qk_norm": True, "norm_position": "post"}, {"qk_norm": True, "position": "nope"},
    {"ffn": "relu2", "norm": "none"}], ids=str)
def test_switches_decode_with_the_kv_cache_as_without(switches) -> None:
    model = _model(**switches).eval()
    if switches.get("zero_init_proj"):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(0.02 * torch.randn_like(param))
    ids = torch.randint(0, 50, (1, 12))
    full = model(ids)
    cache = model.new_kv_cache()
    steps = [model(ids[:, :5], kv_cache=cache)]
    steps += [model(ids[:, i:i + 1], kv_cache=cache) for i in range(5, 12)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


def test_unet_skips_add_the_first_half_s_outputs_with_learned_weights() -> None:
    model = _model(unet_skips=True)  # 2 blocks: block 0's output joins block 1's input
    with torch.no_grad():
        model.skip_weights.fill_(0.7)
    ids = torch.randint(0, 50, (2, 16))
    h0 = model.layers[0](model.token_embeddings(ids), torch.arange(16))
    h1 = model.layers[1](h0 + 0.7 * h0, torch.arange(16))
    torch.testing.assert_close(model(ids), model.lm_head(model.ln_final(h1)))
    model(ids).sum().backward()
    assert model.skip_weights.grad.abs().sum() > 0


def test_value_residual_mixes_the_first_block_s_values() -> None:
    torch.manual_seed(0)
    d, heads = 32, 4
    first = CausalSelfAttention(d, heads, None)
    later = CausalSelfAttention(d, heads, None, value_residual=True)
    with torch.no_grad():
        later.value_mix.fill_(0.25)
    x0, x1 = torch.randn(2, 6, d), torch.randn(2, 6, d)
    values: list[torch.Tensor] = []
    first(x0, first_values=values)
    v0 = F.linear(x0, first.v_proj.weight).unflatten(-1, (heads, -1)).transpose(1, 2)
    torch.testing.assert_close(values[0], v0)

    def reference(x: torch.Tensor) -> torch.Tensor:
        q, k, v = (F.linear(x, p.weight).unflatten(-1, (heads, -1)).transpose(1, 2)
                   for p in (later.q_proj, later.k_proj, later.v_proj))
        out = F.scaled_dot_product_attention(q, k, 0.25 * v + 0.75 * v0, is_causal=True)
        return F.linear(out.transpose(1, 2).flatten(-2), later.output_proj.weight)

    torch.testing.assert_close(later(x1, first_values=values), reference(x1),
                               rtol=1e-4, atol=1e-5)


def test_every_switch_at_once_trains_with_muon(tmp_path) -> None:
    from lmlab.config import load_config
    from lmlab.training.loop import train
    from tests.helpers.tiny_runs import tiny_run

    words = tiny_run(tmp_path, "train.max_steps=30", "optim.optimizer=muon", "model.ffn=relu2",
                     "model.qk_norm=true", "model.zero_init_proj=true", "model.logit_softcap=15",
                     "model.unet_skips=true", "model.value_residual=true", "model.num_layers=4")
    result = train(load_config(None, words))
    assert result.status == "finished" and result.metrics["val/loss"] < 0.6 * 4.16  # ln 64
