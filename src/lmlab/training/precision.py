"""Dynamic loss scaling for float16 training (``train.dtype = "float16"``, or ``auto`` on a CUDA
card without bfloat16).

float16 keeps 5 exponent bits, so small gradients flush to zero: the loss is multiplied by a
scale before the backward pass and the gradients divided by it before clipping and the step.
PyTorch's ``torch.amp.GradScaler`` does this (it is not an optimizer: lmlab's own optimizers
take the step): a step whose gradients hold an inf or NaN is skipped and the scale halved, and
after ``growth_interval`` steps without one the scale doubles. With ``grad_accum`` every
micro-batch's loss is scaled and the gradients are unscaled once per step; under DDP every rank
sees the same averaged gradients, so all ranks skip or take a step together. bfloat16 and
float32 need no scaling: there the scaler is disabled and passes everything through.
"""

import torch


class LossScaler(torch.amp.GradScaler):
    """A ``GradScaler`` that is enabled for float16 autocast alone, with the two things the loop
    adds to it: restoring it from a checkpoint, and the scale as a metric."""

    def __init__(self, dtype: torch.dtype | None, device: torch.device, *,
                 growth_interval: int = 2000) -> None:
        """``growth_interval``: steps without an overflow before the scale doubles (PyTorch's
        default; the tests shorten it to see a growth in a few steps)."""
        super().__init__(device.type, growth_interval=growth_interval,
                         enabled=dtype == torch.float16)

    def restore(self, saved: dict | None) -> None:
        """Continue from a checkpoint's scale and growth count (exact resume). A checkpoint
        without them (saved before lmlab scaled losses, or by a bfloat16 or float32 run resumed
        now in float16) leaves the scale at its start."""
        if saved:
            self.load_state_dict(saved)

    def metrics(self) -> dict[str, float]:
        """``train/loss_scale`` when scaling (a drop means a step was skipped), else nothing."""
        return {"train/loss_scale": self.get_scale()} if self.is_enabled() else {}
