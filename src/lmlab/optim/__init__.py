"""From-scratch optimisation: AdamW, the cosine schedule, and global-norm gradient clipping."""

from lmlab.optim.adamw import AdamW
from lmlab.optim.clip import clip_grad_norm
from lmlab.optim.schedule import cosine_schedule

__all__ = ["AdamW", "clip_grad_norm", "cosine_schedule"]
