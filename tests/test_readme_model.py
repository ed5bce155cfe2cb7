"""The Python example in the README's "The model" section runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_model_section_python_example_runs():
    section = README.read_text().split("## The model", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(compile(block, "README.md#the-model", "exec"), namespace)
    assert namespace["logits"].shape == (1, 1, 1000)
    assert namespace["cache"].length == 11
