"""Validation loss, perplexity and bits per byte of a model on a token file."""

import math

import torch
from torch import nn

from lmlab.device import autocast
from lmlab.loss import cross_entropy, perplexity
from lmlab.tokens import TokenFile
from lmlab.training.batches import EvalBatch, sampled_batches, sequential_batches
from lmlab.training.distributed import ALONE, World


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: TokenFile,
    *,
    batch_size: int,
    context_length: int,
    device: torch.device,
    num_batches: int = 0,
    seed: int = 0,
    autocast_dtype: torch.dtype | None = None,
    world: World = ALONE,
) -> dict[str, float]:
    """``{"val/loss", "val/ppl"}`` and, over the whole file, ``"val/bpb"``.

    ``num_batches=0`` scores every token of the file once (see :func:`sequential_batches`); bits
    per byte are then the total loss in nats over ``ln 2`` times the UTF-8 bytes of the source
    text, comparable across tokenizers. ``num_batches=N`` scores a fixed seeded sample of ``N``
    random batches instead, which is cheaper on a large file but has no bits per byte.

    Under torchrun every rank must call this: each scores its share of the batches, and the
    totals are summed across ranks.
    """
    shard = {"rank": world.rank, "world_size": world.size}
    if num_batches:
        batches = sampled_batches(data.tokens, batch_size, context_length, device, num_batches,
                                  seed, **shard)
    else:
        batches = sequential_batches(data.tokens, batch_size, context_length, device, **shard)
    was_training = model.training
    model.eval()
    total_nats, num_scored = 0.0, 0
    for batch in batches:
        total_nats += _batch_nats(model, batch, device, autocast_dtype)
        num_scored += batch.targets[:, batch.score_from:].numel()
    model.train(was_training)
    total_nats, num_scored = world.sum([total_nats, num_scored], device)
    loss = total_nats / num_scored
    metrics = {"val/loss": loss, "val/ppl": perplexity(loss)}
    if not num_batches and data.source_bytes:
        metrics["val/bpb"] = total_nats / (math.log(2) * data.source_bytes)
    return metrics


def _batch_nats(model: nn.Module, batch: EvalBatch, device: torch.device,
                autocast_dtype: torch.dtype | None) -> float:
    """Summed cross-entropy (nats) of the batch's scored targets."""
    with autocast(device, autocast_dtype):
        logits = model(batch.inputs)
    scored = batch.targets[:, batch.score_from:]
    return cross_entropy(logits[:, batch.score_from:], scored).item() * scored.numel()
