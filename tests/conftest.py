"""Shared test helpers: where the team's real data lives, a tiny model config, and a machine
without a C++ compiler."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from lmlab.config import ModelConfig

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repo; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def tiny_config():
    """Factory of model configs small enough to train for dozens of steps in a test on a CPU."""

    def make(**overrides) -> ModelConfig:
        fields = dict(vocab_size=64, context_length=16, d_model=32, num_layers=2, num_heads=4)
        return ModelConfig(**(fields | overrides))

    return make


@pytest.fixture
def without_cxx() -> Iterator[str]:
    """Inductor's C++ compiler named as a program on no PATH, as on a slim image with no g++.

    Yields the name, which lmlab's warning quotes. Inductor's config is imported here, not at
    the top: it costs ~1 s, which every test session would otherwise pay at start-up.
    """
    from torch._inductor import config as inductor

    name = "no-such-cxx-for-lmlab"
    with inductor.patch({"cpp.cxx": (None, name)}):
        yield name
