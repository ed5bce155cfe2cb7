"""From-scratch optimisation: AdamW, Muon, the learning-rate schedules, global-norm gradient
clipping, and a run's optimizer built from its config."""

from lmlab.optim.adamw import AdamW
from lmlab.optim.clip import clip_grad_norm
from lmlab.optim.groups import build_optimizer, set_learning_rate
from lmlab.optim.muon import Muon, orthogonalize
from lmlab.optim.schedule import check_schedule, cosine_schedule, decayed, learning_rate

__all__ = ["AdamW", "Muon", "build_optimizer", "check_schedule", "clip_grad_norm",
           "cosine_schedule", "decayed", "learning_rate", "orthogonalize", "set_learning_rate"]
