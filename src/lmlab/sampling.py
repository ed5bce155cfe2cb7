"""How to pick each next token: the sampling options and the defaults of ``lmlab generate``.

Apart from :mod:`lmlab.generate` (which needs torch) so that the command line can show these
defaults in ``--help`` without importing torch.
"""

from dataclasses import dataclass

from lmlab.errors import ConfigError


@dataclass(frozen=True)
class Sampling:
    """How to pick each next token; invalid values are a :class:`~lmlab.errors.ConfigError`."""

    temperature: float = 1.0
    """Divides the logits; 0 picks the most likely token (greedy)."""
    top_k: int | None = None
    """Keep only the k most likely tokens (None: all)."""
    top_p: float = 1.0
    """Keep the smallest set of most likely tokens whose probability reaches p (1: all)."""

    def __post_init__(self) -> None:
        if not self.temperature >= 0:  # also rejects NaN
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")


DEFAULT_SAMPLING = Sampling(temperature=0.8, top_p=0.95)
DEFAULT_MAX_NEW_TOKENS = 256
"""What ``lmlab generate`` uses when not told otherwise, and what the report's samples use: a
little below temperature 1 and without the least likely 5% of the mass, fluent but varied."""
