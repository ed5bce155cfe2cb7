"""Sampling: the filters against hand-worked distributions, greedy against full forward passes,
the KV cache against recomputation, stopping, the context limit, seeds and bad arguments."""

import math

import pytest
import torch

from lmlab.errors import ConfigError
from lmlab.generate import Sampling, decode_stream, filter_probs, generate, next_token
from lmlab.nn import TransformerLM
from lmlab.tokenizer import Tokenizer, train_bpe

PROBS = torch.tensor([0.1, 0.5, 0.3, 0.1], dtype=torch.float64)


@pytest.fixture
def model(tiny_config):
    """A random tiny model in float64, so cached and recomputed logits agree to ~1e-15."""
    torch.manual_seed(0)
    return TransformerLM(tiny_config(), dtype=torch.float64).eval()


@pytest.mark.parametrize(
    ("top_k", "top_p", "expected"),
    [
        (None, 1.0, [0.1, 0.5, 0.3, 0.1]),
        (1, 1.0, [0, 1, 0, 0]),
        (2, 1.0, [0, 0.5 / 0.8, 0.3 / 0.8, 0]),
        (3, 1.0, [0.1 / 0.9, 0.5 / 0.9, 0.3 / 0.9, 0]),  # the tie at 0.1 goes to the lower id
        (None, 0.01, [0, 1, 0, 0]),  # the most likely token always survives
        (None, 0.6, [0, 0.5 / 0.8, 0.3 / 0.8, 0]),  # 0.5 < 0.6, so 0.3 joins to cross p
        (None, 0.85, [0.1 / 0.9, 0.5 / 0.9, 0.3 / 0.9, 0]),
        (3, 0.6, [0, 0.5 / 0.8, 0.3 / 0.8, 0]),  # p of the mass top-k left (0.54 of 0.9)
    ],
)
def test_filter_keeps_the_hand_worked_set(top_k, top_p, expected):
    kept = filter_probs(PROBS.clone(), top_k, top_p)
    torch.testing.assert_close(kept, torch.tensor(expected, dtype=torch.float64))


def test_filter_works_row_by_row():
    probs = torch.stack([PROBS, PROBS.flip(0)])
    kept = filter_probs(probs, top_p=0.6)
    torch.testing.assert_close(kept[1], kept[0].flip(0))


def test_sampling_draws_only_from_the_kept_set_in_proportion():
    logits = PROBS.log().repeat(4000, 1)
    generator = torch.Generator().manual_seed(0)
    draws = next_token(logits, Sampling(top_k=2), generator)
    assert set(draws.tolist()) == {1, 2}
    assert (draws == 1).double().mean().item() == pytest.approx(0.625, abs=0.03)


def _greedy_reference(model, prompt, steps):
    """Greedy decoding by full forward passes over the whole sequence, no cache."""
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
    return ids[len(prompt):]


def test_greedy_is_the_argmax_of_full_forward_passes(model):
    prompt = [3, 1, 4, 1, 5]
    steps = model.config.context_length - len(prompt)
    tokens = list(generate(model, prompt, steps, Sampling(temperature=0)))
    assert tokens == _greedy_reference(model, prompt, steps)


def test_temperature_near_zero_is_greedy(model):
    greedy = list(generate(model, [7], 12, Sampling(temperature=0)))
    assert list(generate(model, [7], 12, Sampling(temperature=1e-6), seed=1)) == greedy


@pytest.mark.parametrize("sampling", [Sampling(temperature=0), Sampling(1.0, top_k=20, top_p=0.9)])
def test_cache_gives_the_tokens_of_recomputation_past_the_context(model, sampling):
    steps = 2 * model.config.context_length + 3  # refills the window twice
    cached = list(generate(model, [1, 2, 3], steps, sampling, seed=5))
    recomputed = list(generate(model, [1, 2, 3], steps, sampling, seed=5, use_cache=False))
    assert len(cached) == steps
    assert cached == recomputed


def test_the_prompt_may_fill_the_whole_context(model):
    prompt = list(range(model.config.context_length))
    assert len(list(generate(model, prompt, 5, seed=0))) == 5


def test_a_seed_fixes_the_sample(model):
    first = list(generate(model, [1], 30, seed=3))
    assert list(generate(model, [1], 30, seed=3)) == first
    assert list(generate(model, [1], 30, seed=4)) != first


def test_stops_at_a_stop_token_without_yielding_it(model):
    greedy = list(generate(model, [2], 20, Sampling(temperature=0)))
    k = next(i for i, tok in enumerate(greedy) if i > 0 and tok not in greedy[:i])
    stopped = list(generate(model, [2], 20, Sampling(temperature=0), stop_ids=[greedy[k]]))
    assert stopped == greedy[:k]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.5}, "temperature must be >= 0"),
        ({"temperature": math.nan}, "temperature must be >= 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"top_k": 0}, "top_k must be >= 1"),
    ],
)
def test_bad_sampling_values_are_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Sampling(**kwargs)


@pytest.mark.parametrize(
    ("prompt", "steps", "message"),
    [
        ([], 5, "the prompt is empty"),
        (list(range(17)), 5, "the prompt is 17 tokens, longer than the model's context of 16"),
        ([1], -1, "max_new_tokens must be >= 0"),
    ],
)
def test_bad_generate_arguments_fail_at_the_call(model, prompt, steps, message):
    with pytest.raises(ConfigError, match=message):
        generate(model, prompt, steps)  # no iteration needed: checked before the first token


def test_stream_decoding_prints_characters_split_across_tokens(shared_data):
    text = "Héllo wörld 🙂, naïve café ☕ — 日本語のテキスト\n"
    specials = ["<|endoftext|>"]
    vocab, merges = train_bpe(shared_data / "fixtures" / "tinystories_sample.txt", 300, specials)
    tokenizer = Tokenizer(vocab, merges, specials)
    ids = tokenizer.encode(text)
    pieces = list(decode_stream(ids, tokenizer.vocab))
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert any(piece == "" for piece in pieces)  # some token ended mid-character


def test_stream_decoding_replaces_bytes_that_never_form_a_character():
    assert "".join(decode_stream([0, 1], {0: b"a\xe2\x82", 1: b"b"})) == "a\ufffdb"


def test_logprobs_are_the_models_own_over_full_forward_passes(model):
    """Each sampled token's log-probability under the model at temperature 1, whatever the
    sampling; checked against log_softmax over one forward of the whole sequence."""
    prompt = [1, 2, 3]
    logprobs: list[float] = []
    tokens = list(generate(model, prompt, 10, Sampling(temperature=1.3, top_p=0.8), seed=3,
                           logprobs=logprobs))
    assert len(logprobs) == len(tokens) == 10
    with torch.no_grad():
        full = torch.log_softmax(model(torch.tensor([prompt + tokens]))[0], dim=-1)
    expected = [float(full[len(prompt) - 1 + i, token]) for i, token in enumerate(tokens)]
    assert logprobs == pytest.approx(expected, abs=1e-6)  # attention probabilities are fp32
