"""Shared fixtures (the team's real data, a tiny model config, a machine without a C++
compiler) and the markers: a ``faults`` test is also ``slow``. Helper functions live in
``tests/helpers/``."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from lmlab.config import ModelConfig
from tests.helpers.paths import SHARED_DATA


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A ``faults`` test is also ``slow``."""
    for item in items:
        if item.get_closest_marker("faults"):
            item.add_marker(pytest.mark.slow)


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
