"""From-scratch optimisation: AdamW, Muon, the learning-rate schedules and global-norm gradient
clipping."""

from lmlab.optim.adamw import AdamW
from lmlab.optim.clip import clip_grad_norm
from lmlab.optim.muon import Muon, orthogonalize
from lmlab.optim.schedule import cosine_schedule, decayed

__all__ = ["AdamW", "Muon", "clip_grad_norm", "cosine_schedule", "decayed", "orthogonalize"]
