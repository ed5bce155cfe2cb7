"""Where the repository and the team's real data are."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
"""``../shared/data`` beside the repository: TinyStories/OWT samples, the CS336 fixtures."""
