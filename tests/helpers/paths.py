"""Where the repository and the team's real data are."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRESETS = REPO / "src" / "lmlab" / "presets"
"""The packaged presets (``lmlab presets`` lists them): configs here, sweep files in
``experiments/``."""
SHARED_DATA = REPO.parent / "shared" / "data"
"""``../shared/data`` beside the repository: TinyStories/OWT samples, the CS336 fixtures."""
