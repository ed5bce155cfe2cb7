"""Ctrl-C and SIGTERM during training: the first asks the loop to stop after the current step
(which then saves a checkpoint), a second Ctrl-C interrupts at once."""

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    """Turn the first SIGINT/SIGTERM into a request to stop; a second SIGINT raises
    KeyboardInterrupt. Yields ``stop_requested()``; the previous handlers come back on exit."""
    requested: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        requested.append(signum)

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals stay with whoever owns them
        previous = {}
    try:
        yield lambda: bool(requested)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
