"""What the tests share: paths, tiny runs on learnable tokens, the CLI in-process, fake run
directories, the tokenizer references, the README's blocks.

Test modules import helpers from here (``from tests.helpers.tiny_runs import tiny_run``), never
from one another; ``tests/test_test_layout.py`` checks it.
"""
