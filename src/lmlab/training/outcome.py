"""How a run ended (:class:`RunResult`) and the one line and exit code that tell it.

``lmlab train``, ``lmlab quickstart`` and ``python -m lmlab.training`` (a sweep's subprocess) all
end a run through :func:`outcome`, or :func:`stopped` when it ended in an exception (a second
Ctrl-C, a crash), so a run reads the same wherever it ran, exits 0, 130 or 1, and, when it did
not finish, names the command that continues it: a resume where a checkpoint exists, a fresh
start (``run.resume=auto``) where none was saved. :func:`record_failure` is where the loop
writes a run that stopped in an exception and turns the exceptions a user can act on (out of
device memory, a failed write) into one-line errors.
"""

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmlab.compute import estimate
from lmlab.config import Config
from lmlab.device import free_memory, is_out_of_memory
from lmlab.errors import LmlabError, OutOfMemory, StorageError, first_line
from lmlab.training.rundir import OUT_OF_GPU_MEMORY, RunDir

EXIT_CODES = {"finished": 0, "interrupted": 130, "diverged": 1, "failed": 1}
"""The exit code of each way a run ends: 130 is a shell's code for Ctrl-C."""


@dataclass
class RunResult:
    """How a run ended: ``finished``, ``diverged`` or ``interrupted`` (resumable)."""

    run_dir: Path
    status: str
    step: int
    tokens: int
    metrics: dict[str, float] = field(default_factory=dict)
    """The last logged value of each metric."""
    reason: str | None = None
    """Why the run diverged (which rule, at which step); None otherwise."""
    already_done: bool = False
    """The run had ended before this call (a resume of a finished run): nothing was trained, and
    ``metrics`` are the last ones it logged."""


@dataclass(frozen=True)
class Hints:
    """The commands that continue a run that did not finish, as the caller spells them."""

    resume: str
    """Continues from the run's checkpoint (``lmlab train cfg.toml --resume``)."""
    restart: str
    """Starts the run afresh when it saved no checkpoint (``lmlab train cfg.toml
    run.resume=auto``, which keeps the old metrics log aside)."""

    def next(self, run_dir: Path) -> str:
        """``Resume with: ...`` when ``run_dir`` holds a checkpoint, else how to start again.

        >>> Hints("lmlab train a --resume", "lmlab train a run.resume=auto").next(Path("nowhere"))
        'It saved no checkpoint: start it again with: lmlab train a run.resume=auto'
        """
        if RunDir(run_dir).checkpoint.exists():
            return f"Resume with: {self.resume}"
        return f"It saved no checkpoint: start it again with: {self.restart}"

    @classmethod
    def same(cls, command: str) -> "Hints":
        """One command for both (a sweep, run again, resumes or restarts each point itself)."""
        return cls(command, command)


@dataclass(frozen=True)
class Outcome:
    """The line that tells how a run ended, where it goes and the process's exit code."""

    message: str
    exit_code: int
    to_stderr: bool
    """True for an interruption or a divergence: a script reading stdout sees only results."""


def outcome(result: RunResult, hints: Hints) -> Outcome:
    """The message and exit code of ``result``; ``hints`` are the commands that continue a run
    that was interrupted.

    >>> hints = Hints.same("lmlab train a.toml --resume")
    >>> outcome(RunResult(Path("runs/a"), "finished", 30, 960, {"val/loss": 2.5}), hints).message
    'finished runs/a at step 30 (960 tokens): val/loss 2.5'
    >>> done = outcome(RunResult(Path("runs/a"), "interrupted", 4, 128), hints)
    >>> done.message, done.exit_code, done.to_stderr
    ('interrupted at step 4; checkpoint saved. Resume with: lmlab train a.toml --resume', 130, True)
    """
    if result.status == "finished":
        summary = ", ".join(f"{key} {value:.4g}" for key, value in result.metrics.items()
                            if key.startswith("val/")) or "no validation metrics logged"
        before = "had already " if result.already_done else ""
        return Outcome(f"{before}finished {result.run_dir} at step {result.step} "
                       f"({result.tokens:,} tokens): {summary}", EXIT_CODES["finished"], False)
    if result.status == "interrupted":
        return Outcome(f"interrupted at step {result.step}; checkpoint saved. Resume with: "
                       f"{hints.resume}", EXIT_CODES["interrupted"], True)
    return Outcome(f"error: run diverged: {result.reason}; metrics kept in {result.run_dir}",
                   EXIT_CODES["diverged"], True)


def stopped(run_dir: Path, exc: BaseException, hints: Hints) -> Outcome:
    """The message and exit code of a run that ended in ``exc`` rather than a result: a
    ``KeyboardInterrupt`` (a second Ctrl-C, or one before the loop began: it stops at once,
    without saving) is ``interrupted`` (130); anything else is ``failed`` (1). Either way the
    line ends with :meth:`Hints.next`, which resumes from the last checkpoint if there is one.

    >>> hints = Hints("lmlab train a --resume", "lmlab train a run.resume=auto")
    >>> print(stopped(Path("runs/a"), RuntimeError("CUDA error: misaligned address"), hints)
    ...       .message.replace(". ", ".\\n"))
    error: run failed: RuntimeError: CUDA error: misaligned address.
    It saved no checkpoint: start it again with: lmlab train a run.resume=auto
    """
    if isinstance(exc, KeyboardInterrupt):
        return Outcome(f"interrupted at once (the steps since the last checkpoint are not "
                       f"saved). {hints.next(run_dir)}", EXIT_CODES["interrupted"], True)
    return Outcome(f"error: run failed: {type(exc).__name__}: {first_line(exc).rstrip('.')}. "
                   f"{hints.next(run_dir)}", EXIT_CODES["failed"], True)


def record_failure(exc: BaseException, config: Config, device: torch.device,
                   saved_step: int | None, *, writes: bool) -> LmlabError | None:
    """Write how a run that stopped in ``exc`` ended, when this process ``writes`` the run
    (rank 0): ``interrupted`` after a second Ctrl-C, else ``failed`` with its reason; and return
    the one-line error that takes the place of ``exc``: :func:`out_of_memory`'s for a device out
    of memory, or a failed write with the last good checkpoint (``saved_step``); None when
    ``exc`` goes on as it is. The checkpoint on disk is left as it was.
    """
    run = RunDir(config.run_dir)
    error: LmlabError | None = None
    if is_out_of_memory(exc):
        error = OutOfMemory(out_of_memory(config, device))
    elif isinstance(exc, StorageError):  # a full disk, a read-only folder: say what is safe
        last = f"step {saved_step}, {run.checkpoint}" if saved_step is not None else "none yet"
        error = StorageError(f"{exc} (last good checkpoint: {last}; free the space or fix the "
                             f"folder, then resume)")
    if writes:
        interrupted = type(exc) is KeyboardInterrupt
        reason = None if interrupted else str(error or f"{type(exc).__name__}: {first_line(exc)}")
        with contextlib.suppress(StorageError):  # the disk may be full
            run.set_status("interrupted" if interrupted else "failed", reason)
    return error


def out_of_memory(config: Config, device: torch.device) -> str:
    """The line for a run whose device ran out of memory: the batch and context it ran at, the
    memory ``lmlab estimate`` says the config needs, what the device has free for the run
    (:func:`~lmlab.device.free_memory`; on a CPU, where lmlab has no such figure, it says so),
    and the keys that make the run fit."""
    tcfg = config.train
    free = free_memory(device)
    has = (f"{_gigabytes(free)} GB free" if free is not None
           else f"free memory not known on {device.type}")
    return (f"{OUT_OF_GPU_MEMORY} at batch {tcfg.batch_size}, context "
            f"{config.model.context_length} (about {_gigabytes(estimate(config).memory_bytes)} GB "
            f"needed, {has}): lower train.batch_size, raise train.grad_accum, or set "
            f"train.batch_size=auto")


def _gigabytes(size: float) -> str:
    """Bytes as GB with two significant digits or more: ``'81'``, ``'7.5'``, ``'0.012'``.

    >>> _gigabytes(80.6e9), _gigabytes(7.46e9), _gigabytes(1.23e7)
    ('81', '7.5', '0.012')
    """
    gb = size / 1e9
    return f"{gb:.0f}" if gb >= 10 else f"{gb:.2g}"
