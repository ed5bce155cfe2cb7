"""``python -m lmlab.training.torchrun ARGS``: torchrun (same arguments), ending a failed job in
one line.

When a rank fails, torchrun stops the others, then prints its own traceback and a box of details
after the failed rank's one-line error; on Ctrl-C it prints a traceback after the ranks have
said where they stopped. ``lmlab train --nproc`` runs this wrapper instead, which says in one line
which rank failed first and how, stays quiet on Ctrl-C (exit code 130, as a single process), and
otherwise exits as torchrun does.
"""

import logging
import signal
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main as torchrun


def main() -> None:
    # torchrun's own log lines repeat what the ranks and the line below already say.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        torchrun(sys.argv[1:])
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()  # the others were stopped because of it
        print(f"error: the job stopped: rank {rank} failed ({_how(failure.exitcode)})",
              file=sys.stderr)
        raise SystemExit(1) from None
    except SignalException as exc:  # Ctrl-C: the ranks have saved a checkpoint and said so
        raise SystemExit(128 + exc.sigval) from None


def _how(exitcode: int) -> str:
    """``exit code 1``, or the signal that killed the process (``SIGKILL``: often out of memory).

    >>> _how(1), _how(-9)
    ('exit code 1', 'killed by SIGKILL')
    """
    if exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


if __name__ == "__main__":
    main()
