"""JSON that every parser reads: a non-finite number (a diverged loss) is written as ``null``.

Python's ``json`` writes ``NaN`` and ``Infinity``, which are not JSON: JavaScript, ``jq`` and
pandas' strict readers reject the whole file. lmlab writes ``null`` in their place and reads a
``null`` metric back as NaN, which plots as a gap.
"""

import json
import math
from typing import Any


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` with every non-finite float replaced by ``None``.

    >>> dumps({"loss": float("nan"), "steps": [1, float("inf")]})
    '{"loss": null, "steps": [1, null]}'
    """
    return json.dumps(_finite(obj), allow_nan=False, **kwargs)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(value) for value in obj]
    return obj


def metric_record(line: str) -> dict[str, Any]:
    """One line of ``metrics.jsonl`` as a dict, a ``null`` metric (non-finite when logged) as NaN.

    >>> metric_record('{"step": 3, "train/loss": null}')
    {'step': 3, 'train/loss': nan}
    """
    return {key: math.nan if value is None else value for key, value in json.loads(line).items()}
