"""The errors lmlab raises on bad input.

Every one carries a one-line message that says what is wrong and where (a config key, a file path,
a byte offset). The CLI prints ``error: <message>`` and exits non-zero instead of a traceback.
Kinds that are about a bad value also subclass ``ValueError`` so library users can catch either.
"""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none): library errors
    (torch, gloo, huggingface_hub) often run to many lines, and lmlab reports in one.

    >>> first_line(RuntimeError("size mismatch\\n  details")), first_line(EOFError())
    ('size mismatch', 'EOFError')
    """
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class LmlabError(Exception):
    """Base class of every error lmlab reports to the user."""


class ConfigError(LmlabError, ValueError):
    """A config key is unknown, missing or has a bad value."""


class DataError(LmlabError, ValueError):
    """A data file is missing, empty, malformed or does not match what it is used with."""


class TokenizerError(LmlabError, ValueError):
    """A tokenizer file is missing or malformed, or a tokenizer argument is invalid."""


class CheckpointError(LmlabError):
    """A checkpoint is missing, truncated or does not match the model/config it is loaded into."""


class StorageError(LmlabError, OSError):
    """A file could not be written: no space left on the device, permission denied, a read-only
    folder. The message names the file and the cause; nothing half-written is left behind."""


class RunInUseError(LmlabError):
    """Another live process is writing the run directory (it holds the run's lock)."""


class OutOfMemory(LmlabError):
    """The device ran out of memory during a run: the message says at which batch and context,
    about how much was needed and free, and which keys to change."""


class DistributedError(LmlabError):
    """Another process of a distributed job failed or stopped answering."""
