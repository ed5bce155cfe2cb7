"""``python -m lmlab.training < config.json``: train one resolved config, read as JSON on stdin.

The entry point a sweep's subprocesses run (:mod:`lmlab.experiments.runner`): the config is the
point's, already resolved and validated, so no command line is composed. It prints the run's
notes and progress lines (its ``train.log``), then the line :func:`~lmlab.training.outcome.outcome`
writes on how the run ended, and exits with its code: 0 (finished), 1 (diverged, failed, or an
``error:`` line for bad input) or 130 (interrupted). Whatever stopped it, the last line says to run
the sweep again, which resumes the point from its checkpoint or starts it afresh.
"""

import json
import sys
import traceback

from lmlab.config import config_from_dict
from lmlab.errors import ConfigError, LmlabError
from lmlab.training.loop import train
from lmlab.training.outcome import Hints, outcome, stopped

HINTS = Hints.same("the same lmlab sweep command (finished points are skipped)")
"""How a sweep's point that stopped continues: its sweep, run again (``run.resume=auto``)."""


def main() -> int:
    try:
        try:
            raw = json.loads(sys.stdin.read())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"stdin holds no JSON config ({exc})") from None
        config = config_from_dict(raw, source="stdin")
    except LmlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        result = train(config, say=lambda line: print(line, file=sys.stderr, flush=True))
    except LmlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (Exception, KeyboardInterrupt) as exc:
        if not isinstance(exc, KeyboardInterrupt):
            traceback.print_exc()
        done = stopped(config.run_dir, exc, HINTS)
    else:
        done = outcome(result, HINTS)
    print(done.message, file=sys.stderr)  # all of it is the run's train.log
    return done.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
