"""Run directories as the trainer writes them, without training (for plots, reports, seeds)."""

import json
from pathlib import Path

from lmlab.training.rundir import RunDir


def fake_run(root: Path, name: str, status: str, losses: list[float], *,
             data: dict[str, str] | None = None, **optim: float) -> Path:
    """A run directory as the trainer writes it, without training: config, status, metrics
    (a train loss every step, a val loss every other step)."""
    run = RunDir(root / name)
    run.root.mkdir(parents=True)
    config = {"model": {"d_model": 32}, "optim": {"lr_max": 1e-3, **optim},
              "run": {"name": name}, **({"data": data} if data else {})}
    run.config.write_text(json.dumps(config))
    run.set_status(status)
    lines = []
    for step, loss in enumerate(losses, start=1):
        lines.append({"step": step, "tokens": 100 * step, "wall_time_s": 0.5 * step,
                      "train/loss": loss})
        if step % 2 == 0:
            lines.append({"step": step, "tokens": 100 * step, "wall_time_s": 0.5 * step,
                          "val/loss": loss + 0.1})
    run.metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run.root
