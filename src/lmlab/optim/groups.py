"""A run's optimizer: which parameters go to AdamW or Muon, at which rate and weight decay."""

import torch
from torch import nn

from lmlab.config import Config
from lmlab.device import resolve_matmul_dtype
from lmlab.optim.adamw import AdamW
from lmlab.optim.muon import Muon


def build_optimizer(model: nn.Module, config: Config) -> torch.optim.Optimizer:
    """AdamW, or Muon for the blocks' weight matrices and AdamW for the rest (``optim.optimizer``).

    Weight decay applies to matrices only: norm gains (1-D) are not decayed, as in GPT-2. Each
    group's ``lr_scale`` is its peak learning rate over ``optim.lr_max``, so one schedule drives
    both optimizers (see :func:`set_learning_rate`). An untied embedding gets a group of its
    own when ``optim.embedding_lr`` gives it its own rate.
    """
    optim = config.optim
    params = list({id(p): p for p in model.parameters()}.values())  # a tied matrix once
    embedding = model.token_embeddings.weight
    own_rate = optim.embedding_lr is not None
    matrices = [p for p in params if p.dim() >= 2 and not (own_rate and p is embedding)]
    adamw_only = [{"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if own_rate:
        adamw_only.append({"params": [embedding], "weight_decay": optim.weight_decay,
                           "lr": optim.embedding_lr,
                           "lr_scale": optim.embedding_lr / optim.lr_max})
    adamw = dict(lr=optim.lr_max, betas=(optim.beta1, optim.beta2), eps=optim.eps)
    if optim.optimizer == "adamw":
        return AdamW([{"params": matrices, "weight_decay": optim.weight_decay}, *adamw_only],
                     **adamw)
    lookup_tables = {id(embedding), id(model.lm_head.weight)}
    return Muon([
        {"params": [p for p in matrices if id(p) not in lookup_tables], "algorithm": "muon",
         "lr": optim.muon_lr, "lr_scale": optim.muon_lr / optim.lr_max},
        {"params": [p for p in matrices if id(p) in lookup_tables], "algorithm": "adamw",
         "weight_decay": optim.weight_decay},
        *({**group, "algorithm": "adamw"} for group in adamw_only),
    ], momentum=optim.muon_momentum, weight_decay=optim.weight_decay,
        ns_dtype=resolve_matmul_dtype(optim.muon_dtype, params[0].device), **adamw)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group to ``lr`` times its ``lr_scale`` (1 unless the group has its own peak)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
