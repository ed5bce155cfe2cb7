"""``python -m lmlab.training < config.json``: train one resolved config, read as JSON on stdin.

The entry point a sweep's subprocesses run (:mod:`lmlab.experiments.runner`): the config is the
point's, already resolved and validated, so no command line is composed. It prints the run's
notes and progress lines (its ``train.log``), one line on how the run ended, and exits 0
(finished), 1 (diverged, or an ``error:`` line for bad input) or 130 (interrupted at a
checkpoint).
"""

import json
import sys

from lmlab.config import config_from_dict
from lmlab.errors import ConfigError, LmlabError
from lmlab.training.loop import train


def main() -> int:
    try:
        try:
            raw = json.loads(sys.stdin.read())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"stdin holds no JSON config ({exc})") from None
        result = train(config_from_dict(raw, source="stdin"),
                       say=lambda line: print(line, file=sys.stderr, flush=True))
    except LmlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    why = f": {result.reason}" if result.reason else ""
    print(f"{result.status} {result.run_dir} at step {result.step} ({result.tokens:,} tokens)"
          f"{why}", file=sys.stderr)
    return {"finished": 0, "interrupted": 130}.get(result.status, 1)


if __name__ == "__main__":
    raise SystemExit(main())
