"""TransformerLM: parity with a built-ins reference, causality, KV cache, ablations, bad input."""

import itertools

import pytest
import torch
from torch.testing import assert_close

from bench.reference_lm import ReferenceLM
from lmlab.config import ModelConfig
from lmlab.loss import cross_entropy
from lmlab.nn import TransformerLM
from lmlab.optim import AdamW


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("tie,fused", [(False, False), (True, False), (False, True)])
def test_lm_matches_builtins_reference_with_same_state_dict(tiny_config, tie, fused):
    config = tiny_config(
        vocab_size=97,
        context_length=24,
        d_model=48,
        num_heads=6,
        tie_embeddings=tie,
        fused_attention=fused,
    )
    model = TransformerLM(config)
    reference = ReferenceLM(config)
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(0, 97, (3, 24))
    logits = model(ids)
    assert logits.shape == (3, 24, 97)
    assert_close(logits, reference(ids), rtol=1e-4, atol=1e-4)


def test_state_dict_uses_llama_cs336_names(tiny_config):
    names = set(TransformerLM(tiny_config(num_layers=1)).state_dict())
    assert names == {
        "token_embeddings.weight",
        "ln_final.weight",
        "lm_head.weight",
        "layers.0.ln1.weight",
        "layers.0.ln2.weight",
        "layers.0.attn.q_proj.weight",
        "layers.0.attn.k_proj.weight",
        "layers.0.attn.v_proj.weight",
        "layers.0.attn.output_proj.weight",
        "layers.0.ffn.w1.weight",
        "layers.0.ffn.w2.weight",
        "layers.0.ffn.w3.weight",
    }


@pytest.mark.parametrize("position", ["rope", "nope"])
def test_changing_a_token_never_changes_earlier_logits(tiny_config, position):
    model = TransformerLM(tiny_config(position=position))
    ids = torch.randint(0, 64, (2, 16))
    changed = ids.clone()
    changed[:, 9] = (ids[:, 9] + 1) % 64
    before, after = model(ids), model(changed)
    assert_close(before[:, :9], after[:, :9])
    assert not torch.allclose(before[:, 9:], after[:, 9:])


def test_the_rope_tables_exist_once_per_model_and_no_mask_is_kept(tiny_config):
    model = TransformerLM(tiny_config(num_layers=3))
    ropes = {id(layer.attn.rope) for layer in model.layers}
    assert len(ropes) == 1 and None not in ropes
    d_half = tiny_config().d_head // 2
    shapes = sorted(tuple(b.shape) for _, b in model.named_buffers())  # shared ones once
    assert shapes == [(tiny_config().context_length, d_half)] * 2  # cos and sin, nothing else


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_kv_cache_decoding_matches_full_forward(tiny_config, norm_position):
    model = TransformerLM(tiny_config(norm_position=norm_position)).eval()
    ids = torch.randint(0, 64, (2, 16))
    full = model(ids)
    cache = model.new_kv_cache()
    pieces = [model(ids[:, :5], kv_cache=cache)]  # prompt, then one token at a time
    pieces += [model(ids[:, t : t + 1], kv_cache=cache) for t in range(5, 16)]
    assert cache.length == 16
    assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-5)


ABLATIONS = list(
    itertools.product(
        ["rms", "none"], ["pre", "post"], ["rope", "nope"], ["swiglu", "silu"], [False, True]
    )
)


@pytest.mark.parametrize("norm,norm_position,position,ffn,tie", ABLATIONS)
def test_every_ablation_trains_and_overfits_one_batch(
    tiny_config, norm, norm_position, position, ffn, tie
):
    config = tiny_config(
        norm=norm, norm_position=norm_position, position=position, ffn=ffn, tie_embeddings=tie
    )
    model = TransformerLM(config)
    lr = (
        1e-2 if norm == "rms" else 3e-3
    )  # without norms the same lr blows up (the ablation's point)
    optimizer = AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    ids = torch.randint(0, 64, (4, 17))
    inputs, targets = ids[:, :-1], ids[:, 1:]
    for step in range(200):
        loss = cross_entropy(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            first = loss.item()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
    assert first > 3.5  # about ln(64) = 4.16 at init
    assert loss.item() < 1.0, f"did not overfit one batch: loss {loss.item():.3f}"


def test_d_ff_defaults_depend_on_ffn_kind():
    assert ModelConfig(d_model=512, ffn="swiglu").ffn_width == 1408  # 8/3 * 512 rounded up to 64
    assert ModelConfig(d_model=512, ffn="silu").ffn_width == 2048
    assert ModelConfig(d_model=512, d_ff=1344).ffn_width == 1344


def test_parameter_count_and_flops(tiny_config):
    config = tiny_config(d_ff=96)
    d, v, L = 32, 64, 2
    per_layer = 4 * d * d + 3 * d * 96 + 2 * d
    untied = TransformerLM(config)
    assert untied.num_parameters() == 2 * v * d + L * per_layer + d
    assert untied.num_parameters(non_embedding=True) == L * per_layer + d
    tied = TransformerLM(config.model_copy(update={"tie_embeddings": True}))
    assert tied.num_parameters() == v * d + L * per_layer + d
    matmul = L * (4 * d * d + 3 * d * 96) + v * d
    assert untied.flops_per_token() == 3 * (2 * matmul + 4 * L * 16 * d)
    assert untied.flops_per_token(seq_len=8, training=False) == 2 * matmul + 4 * L * 8 * d


def test_sequence_longer_than_context_is_a_clear_error(tiny_config):
    model = TransformerLM(tiny_config())
    with pytest.raises(ValueError, match=r"17 tokens exceeds model.context_length \(16\)"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_token_id_out_of_range_is_a_clear_error(tiny_config):
    with pytest.raises(ValueError, match="token id 64 is out of range for a vocabulary of 64"):
        TransformerLM(tiny_config())(torch.tensor([[1, 64]]))


@pytest.mark.parametrize(
    "fields,key",
    [
        (dict(d_model=30, num_heads=4), "num_heads"),
        (dict(norm="layernorm"), "norm"),
        (dict(position="alibi"), "position"),
        (dict(ffn="gelu"), "ffn"),
        (dict(norm_position="sandwich"), "norm_position"),
        (dict(num_layers=0), "num_layers"),
        (dict(dropout=1.0), "dropout"),
        (dict(embedding_std=0.0), "embedding_std"),
        (dict(tie_embeddings=True, embedding_std=0.02), "embedding_std"),
    ],
)
def test_bad_model_config_names_the_field(fields, key):
    with pytest.raises(ValueError, match=key):
        ModelConfig(**fields)


@pytest.mark.parametrize("std,expected", [(None, 1.0), (0.02, 0.02)])
def test_untied_embedding_starts_at_embedding_std(tiny_config, std, expected):
    weight = TransformerLM(tiny_config(vocab_size=4096, embedding_std=std)).token_embeddings.weight
    # a normal cut at +-3 sigma keeps 0.9866 of sigma (the variance of the truncated normal)
    assert abs(weight.std().item() / (0.9866 * expected) - 1) < 0.03
    assert weight.abs().max().item() <= 3 * expected


def test_modules_honour_dtype(tiny_config):
    model = TransformerLM(tiny_config(), dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model(torch.randint(0, 64, (1, 8))).dtype == torch.bfloat16


def test_dropout_is_off_in_eval_mode_and_regularises_in_training(tiny_config):
    plain = TransformerLM(tiny_config())
    dropped = TransformerLM(tiny_config(dropout=0.3))
    dropped.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 64, (2, 8))
    assert_close(dropped.eval()(tokens), plain.eval()(tokens))  # identity when evaluating
    dropped.train()
    first, second = dropped(tokens), dropped(tokens)
    assert not torch.allclose(first, second)  # a fresh mask per forward
    torch.manual_seed(5)
    again = dropped(tokens)
    torch.manual_seed(5)
    assert_close(dropped(tokens), again)  # drawn from torch's RNG, so resumable runs repeat
