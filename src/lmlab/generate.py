"""Sampling text from a trained model: temperature, top-k, top-p, a stop token and a KV cache.

Each step turns the last position's logits ``(vocab,)`` into a next token:

1. ``temperature``: divide the logits by T (T < 1 sharpens, T > 1 flattens); T = 0 means greedy,
   the argmax, with no randomness at all.
2. ``top_k``: keep only the k most likely tokens.
3. ``top_p`` (nucleus): of those, keep the smallest set of most likely tokens whose probability
   mass reaches p (always at least the most likely one), renormalise, and draw from it.

Decoding is incremental: the prompt is run once to fill the KV cache, then each new token costs
one position of compute. The cache can hold at most ``model.config.context_length`` tokens; when
it is full, the last ``context_length // 2`` tokens are re-run into a fresh cache and decoding
continues. Keeping half the window (rather than everything but one token) re-prefills only every
``context_length // 2`` tokens, so long generations stay close to one position per token, while
the model still sees at least half a context of history. Positions restart at 0 in the new window:
the model was trained on windows cut at random offsets, so this is what it knows.

The randomness comes from one seeded ``torch.Generator``, so a seed gives the same text every time,
with or without the cache (the cache changes the cost, not the distribution).
"""

import codecs
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from lmlab.errors import ConfigError
from lmlab.nn import TransformerLM, softmax
from lmlab.sampling import Sampling


def filter_probs(probs: Tensor, top_k: int | None = None, top_p: float = 1.0) -> Tensor:
    """Zero every token outside the top-k and then outside the nucleus; renormalise.

    ``probs``: ``(..., vocab)``, each row summing to 1. Ties are broken by token id (a stable
    sort), so exactly ``top_k`` tokens survive the top-k cut.

    >>> filter_probs(torch.tensor([0.1, 0.5, 0.3, 0.1]), top_p=0.7)
    tensor([0.0000, 0.6250, 0.3750, 0.0000])
    """
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    if top_k is not None:
        sorted_probs[..., top_k:] = 0
    if top_p < 1:
        # Keep a token while the mass of the more likely tokens before it is still below p of
        # what remains: this keeps the token that crosses p, and always the first one.
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        total = sorted_probs.sum(dim=-1, keepdim=True)
        sorted_probs = torch.where(mass_before < top_p * total, sorted_probs, 0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)


def next_token(logits: Tensor, sampling: Sampling, generator: torch.Generator | None) -> Tensor:
    """Pick one token per row of ``logits`` ``(batch, vocab)``; returns ids ``(batch,)``."""
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    probs = softmax(logits.float() / sampling.temperature, dim=-1)
    probs = filter_probs(probs, sampling.top_k, sampling.top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def generate(
    model: TransformerLM,
    prompt: list[int],
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    *,
    stop_ids: Iterable[int] = (),
    seed: int | None = None,
    use_cache: bool = True,
    logprobs: list[float] | None = None,
) -> Iterator[int]:
    """Yield up to ``max_new_tokens`` token ids that continue ``prompt``, one at a time.

    Stops early after drawing any id in ``stop_ids`` (e.g. ``<|endoftext|>``), which is not
    yielded. ``logprobs``, when given, receives for each yielded token the log-probability
    (nats) the model itself gave it: temperature 1, no top-k or top-p, so samples drawn with
    different settings are scored alike. ``seed`` seeds the sampling generator (None: a random
    seed). ``use_cache=False`` recomputes the whole window every step: the same tokens, slower;
    it exists to test the cache.
    Runs on the model's device; the model should be in ``eval()`` mode.

    The arguments are checked at the call, before the first token is asked for: a
    :class:`~lmlab.errors.ConfigError` when the prompt is empty or longer than the model's
    context, or ``max_new_tokens`` is negative.
    """
    context = model.config.context_length
    if not prompt:
        raise ConfigError("the prompt is empty: give at least one token")
    if len(prompt) > context:
        raise ConfigError(f"the prompt is {len(prompt)} tokens, longer than the model's context "
                          f"of {context} (model.context_length)")
    if max_new_tokens < 0:
        raise ConfigError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    generator = torch.Generator(device=next(model.parameters()).device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return _decode(model, list(prompt), max_new_tokens, sampling, set(stop_ids), generator,
                   use_cache, logprobs)


@torch.no_grad()
def _decode(model: TransformerLM, window: list[int], max_new_tokens: int, sampling: Sampling,
            stop: set[int], generator: torch.Generator, use_cache: bool,
            logprobs: list[float] | None) -> Iterator[int]:
    """The decoding loop of :func:`generate`. ``window`` holds the tokens the model sees, at
    positions ``0 .. len(window) - 1``; ``pending`` is the part of it not yet in the cache."""
    context = model.config.context_length
    device = generator.device
    cache = model.new_kv_cache() if use_cache else None
    pending = window
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([pending], device=device), kv_cache=cache)[:, -1]
        token = int(next_token(logits, sampling, generator).item())  # logits: (1, vocab)
        if token in stop:
            return
        if logprobs is not None:
            logits = logits[0].to(torch.promote_types(logits.dtype, torch.float32))
            peak = logits.max()
            logprobs.append(float(logits[token] - peak - (logits - peak).exp().sum().log()))
        yield token
        if len(window) == context:  # no room for the new token: keep the last half only
            window = window[len(window) - context // 2:]
            cache = model.new_kv_cache() if use_cache else None
        window.append(token)
        pending = [token] if cache is not None and cache.length else window


def decode_stream(ids: Iterable[int], vocab: dict[int, bytes]) -> Iterator[str]:
    """Turn a stream of token ids into text pieces as soon as they are whole characters.

    A byte-level token can end in the middle of a multi-byte UTF-8 character (an emoji is four
    bytes, often two tokens); decoding each token alone would print U+FFFD garbage. An incremental
    decoder holds the partial bytes back until the character is complete. Bytes that never form
    valid UTF-8 become U+FFFD, as in :meth:`~lmlab.tokenizer.Tokenizer.decode`.

    >>> vocab = {0: b"caf", 1: b"\\xc3", 2: b"\\xa9!"}
    >>> list(decode_stream([0, 1, 2], vocab))
    ['caf', '', 'é!']
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for token in ids:
        yield decoder.decode(vocab[token])
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail
