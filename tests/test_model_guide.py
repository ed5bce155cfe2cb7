"""The Python example of the model guide (docs/model.md) runs as written."""

import re

from tests.helpers.paths import REPO

GUIDE = REPO / "docs" / "model.md"


def test_the_model_guide_python_example_runs():
    block = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)[0]
    namespace: dict = {}
    exec(compile(block, "docs/model.md", "exec"), namespace)
    assert namespace["logits"].shape == (1, 1, 1000)
    assert namespace["cache"].length == 11
