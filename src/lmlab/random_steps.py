"""A config's model and optimizer stepped on random token ids, no data needed: the one training
step that ``lmlab sweep --dry-run`` times (:func:`lmlab.compute.measure_speed`) and that the
batch probe tries on a GPU (:func:`lmlab.training.batch_probe.cuda_fits`)."""

import torch

from lmlab.config import Config
from lmlab.device import autocast, resolve_dtype
from lmlab.loss import cross_entropy
from lmlab.nn import TransformerLM
from lmlab.optim.groups import build_optimizer


class RandomSteps:
    """``config``'s model (fresh weights) and optimizer on ``device`` at the run's autocast
    precision; weights, gradients and optimizer state stay between steps, as in training."""

    def __init__(self, config: Config, device: torch.device) -> None:
        self.config, self.device = config, device
        self.model = TransformerLM(config.model, device=device)
        self.optimizer = build_optimizer(self.model, config)
        self.dtype = resolve_dtype(config.train.dtype, device)

    def ids(self, batch: int) -> torch.Tensor:
        """``batch`` random windows of ``context_length + 1`` ids, made on the device."""
        model = self.config.model
        return torch.randint(0, model.vocab_size, (batch, model.context_length + 1),
                             device=self.device)

    def step(self, ids: torch.Tensor, micro_batches: int = 1) -> None:
        """One optimizer step: ``micro_batches`` forward and backward passes over ``ids``, then
        the update."""
        for _ in range(micro_batches):
            with autocast(self.device, self.dtype):
                loss = cross_entropy(self.model(ids[:, :-1]), ids[:, 1:])
            loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def forward(self, ids: torch.Tensor) -> None:
        """One forward pass without gradients, as evaluation runs it."""
        with torch.no_grad(), autocast(self.device, self.dtype):
            self.model(ids[:, :-1])
