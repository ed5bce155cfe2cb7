"""How a run ended (:class:`RunResult`) and the one line and exit code that tell it.

``lmlab train``, ``lmlab quickstart`` and ``python -m lmlab.training`` (a sweep's subprocess) all
end a run through :func:`outcome`, so a run that finished, was interrupted or diverged reads the
same wherever it ran, and exits 0, 130 or 1.
"""

from dataclasses import dataclass, field
from pathlib import Path

EXIT_CODES = {"finished": 0, "interrupted": 130, "diverged": 1}
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
class Outcome:
    """The line that tells how a run ended, where it goes and the process's exit code."""

    message: str
    exit_code: int
    to_stderr: bool
    """True for an interruption or a divergence: a script reading stdout sees only results."""


def outcome(result: RunResult, resume_hint: str) -> Outcome:
    """The message and exit code of ``result``; ``resume_hint`` is the command that continues an
    interrupted run (``lmlab train cfg.toml --resume``).

    >>> outcome(RunResult(Path("runs/a"), "finished", 30, 960, {"val/loss": 2.5}), "").message
    'finished runs/a at step 30 (960 tokens): val/loss 2.5'
    >>> stopped = outcome(RunResult(Path("runs/a"), "interrupted", 4, 128), "lmlab train a.toml")
    >>> stopped.message, stopped.exit_code, stopped.to_stderr
    ('interrupted at step 4; checkpoint saved. Resume with: lmlab train a.toml', 130, True)
    """
    if result.status == "finished":
        summary = ", ".join(f"{key} {value:.4g}" for key, value in result.metrics.items()
                            if key.startswith("val/")) or "no validation metrics logged"
        before = "had already " if result.already_done else ""
        return Outcome(f"{before}finished {result.run_dir} at step {result.step} "
                       f"({result.tokens:,} tokens): {summary}", EXIT_CODES["finished"], False)
    if result.status == "interrupted":
        return Outcome(f"interrupted at step {result.step}; checkpoint saved. Resume with: "
                       f"{resume_hint}", EXIT_CODES["interrupted"], True)
    return Outcome(f"error: run diverged: {result.reason}; metrics kept in {result.run_dir}",
                   EXIT_CODES["diverged"], True)
