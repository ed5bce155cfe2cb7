"""Shared test helpers: where the team's real data lives, and a tiny model config."""

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
