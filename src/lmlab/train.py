"""The training loop: one readable function from config to a tracked, resumable run.

``train(config)`` loads the token files, builds the model and AdamW, and runs steps of gradient
accumulation -> clipping -> optimizer step under the cosine schedule, with periodic logging,
evaluation and checkpointing, until ``max_steps`` / ``max_tokens`` or the time budget is spent.
Everything that makes a resumed run continue exactly (model, optimizer, step, RNG, the sampler's
position, running loss sums) is in the checkpoint. The library prints nothing: metrics go to the
trackers, and ``show_progress`` draws a progress bar on stderr.

Under ``torchrun`` every process runs this same loop on its own slice of each global batch (see
:mod:`lmlab.distributed`); rank 0 alone writes the run directory, logs and saves checkpoints.
"""

import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from lmlab.checkpoint import load_training_state, restore_model, save_training_state
from lmlab.config import Config
from lmlab.data import RandomBatches, load_tokens
from lmlab.device import autocast, resolve_device, resolve_dtype
from lmlab.distributed import World, distributed
from lmlab.errors import ConfigError
from lmlab.evaluate import evaluate
from lmlab.loss import cross_entropy
from lmlab.nn import TransformerLM
from lmlab.optim import AdamW, Muon, clip_grad_norm, cosine_schedule
from lmlab.tracking import RunDir, Trackers


@dataclass
class Progress:
    """Counters that survive a resume (saved in the checkpoint's ``progress``)."""

    tokens: int = 0
    train_time_s: float = 0.0
    """Seconds spent in training steps: what ``train.time_budget_s`` counts."""
    wall_time_s: float = 0.0
    """Seconds since the run began, evaluation and checkpointing included, across resumes."""
    first_loss: float | None = None
    """Loss of the first step: the reference for divergence."""
    loss_sum: float = 0.0
    loss_steps: int = 0
    """Sum and count of step losses since the last log (the logged loss is their mean); the sum
    lives on the device between checkpoints."""


@dataclass
class RunResult:
    """How a run ended: ``finished``, ``diverged`` or ``interrupted`` (resumable)."""

    run_dir: Path
    status: str
    step: int
    tokens: int
    metrics: dict[str, float] = field(default_factory=dict)
    """The last logged value of each metric."""


def learning_rate(config: Config, step: int, train_time_s: float) -> float:
    """The learning rate for optimizer step ``step`` (0-based).

    Linear warmup over ``optim.warmup_iters`` steps, then a cosine down to ``optim.lr_min`` at
    ``cosine_cycle_iters`` (default: the last step) or, with ``train.schedule_over_time``, at the
    end of the time budget; constant ``lr_max`` when neither end is known.
    """
    optim = config.optim
    if config.train.schedule_over_time and step >= optim.warmup_iters:
        fraction = train_time_s / config.train.time_budget_s  # type: ignore[operator]
        return cosine_schedule(fraction, optim.lr_max, optim.lr_min, 0, 1)
    cycle = config.cosine_cycle_iters
    return cosine_schedule(step, optim.lr_max, optim.lr_min, optim.warmup_iters,
                           cycle if cycle is not None else math.inf)  # type: ignore[arg-type]


def build_optimizer(model: TransformerLM, config: Config) -> torch.optim.Optimizer:
    """AdamW, or Muon for the blocks' weight matrices and AdamW for the rest (``optim.optimizer``).

    Weight decay applies to matrices only: norm gains (1-D) are not decayed, as in GPT-2. Each
    group's ``lr_scale`` is its peak learning rate over ``optim.lr_max``, so one schedule drives
    both optimizers (see :func:`set_learning_rate`).
    """
    optim = config.optim
    params = list({id(p): p for p in model.parameters()}.values())  # a tied matrix once
    matrices = [p for p in params if p.dim() >= 2]
    gains = {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}
    adamw = dict(lr=optim.lr_max, betas=(optim.beta1, optim.beta2), eps=optim.eps)
    if optim.optimizer == "adamw":
        return AdamW([{"params": matrices, "weight_decay": optim.weight_decay}, gains], **adamw)
    lookup_tables = {id(model.token_embeddings.weight), id(model.lm_head.weight)}
    return Muon([
        {"params": [p for p in matrices if id(p) not in lookup_tables], "algorithm": "muon",
         "lr": optim.muon_lr, "lr_scale": optim.muon_lr / optim.lr_max},
        {"params": [p for p in matrices if id(p) in lookup_tables], "algorithm": "adamw",
         "weight_decay": optim.weight_decay},
        {**gains, "algorithm": "adamw"},
    ], momentum=optim.muon_momentum, weight_decay=optim.weight_decay, **adamw)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group to ``lr`` times its ``lr_scale`` (1 unless the group has its own peak)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def train(config: Config, *, show_progress: bool = False) -> RunResult:
    """Train ``config`` in ``<runs_dir>/<name>``; see the module docstring.

    Raises :class:`~lmlab.errors.ConfigError`, :class:`~lmlab.errors.DataError` or
    :class:`~lmlab.errors.CheckpointError` before writing anything when the inputs are bad.
    """
    tcfg = config.train
    with distributed(tcfg.dist_backend, resolve_device(tcfg.device), tcfg.dist_timeout_s) as world:
        return _train(_for_world(config, world), world, show_progress)


def _train(cfg: Config, world: World, show_progress: bool) -> RunResult:
    tcfg = cfg.train
    run = RunDir(cfg.run_dir)
    resume = _resume_wanted(cfg, run)
    world.barrier()  # every rank has looked at the run directory before rank 0 writes to it
    device = world.device(resolve_device(tcfg.device))
    amp_dtype = resolve_dtype(tcfg.dtype, device)
    context = cfg.model.context_length
    train_data = load_tokens(cfg.data.train_path, vocab_size=cfg.model.vocab_size,
                             context_length=context)
    valid_data = load_tokens(cfg.data.valid_path, vocab_size=cfg.model.vocab_size,
                             context_length=context)

    torch.manual_seed(tcfg.seed)
    model = TransformerLM(cfg.model, device=device)
    optimizer = build_optimizer(model, cfg)
    sampler = RandomBatches(train_data.tokens, tcfg.batch_size, context, device, tcfg.seed,
                            grad_accum=tcfg.grad_accum, rank=world.rank, world_size=world.size)
    step, progress = 0, Progress()
    if resume:
        state = load_training_state(run.checkpoint, cfg)
        restore_model(state, model, optimizer, run.checkpoint)
        sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"])
        step, progress = state["iteration"], Progress(**state["progress"])

    def done() -> bool:
        out_of_steps = cfg.max_steps is not None and step >= cfg.max_steps
        out_of_time = tcfg.time_budget_s is not None and progress.train_time_s >= tcfg.time_budget_s
        return out_of_steps or out_of_time

    if resume and done():
        return RunResult(run.root, run.status or "finished", step, progress.tokens)
    trackers = Trackers([])
    if world.is_main:
        trackers = Trackers.for_run(cfg, run, resume_step=step if resume else None)
        run.write_config(cfg)
        run.write_env(device)
        run.set_status("running")

    forward = world.wrap(torch.compile(model) if tcfg.compile else model, device)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    max_norm = cfg.optim.grad_clip if cfg.optim.grad_clip is not None else math.inf
    last: dict[str, float] = {}
    session_start = time.perf_counter() - progress.wall_time_s

    def log(metrics: dict[str, float]) -> None:
        progress.wall_time_s = time.perf_counter() - session_start
        trackers.log({"tokens": progress.tokens, "wall_time_s": round(progress.wall_time_s, 3),
                      "train_time_s": round(progress.train_time_s, 3), **metrics}, step)
        last.update(metrics)

    def run_eval() -> None:  # every rank scores its share of the validation batches
        log(evaluate(model, valid_data, batch_size=tcfg.batch_size, context_length=context,
                     device=device, num_batches=tcfg.eval_batches, seed=tcfg.seed,
                     autocast_dtype=amp_dtype, world=world))

    def save() -> None:
        progress.wall_time_s = time.perf_counter() - session_start
        interval_loss.copy_(world.mean(interval_loss))  # what every rank resumes from
        progress.loss_sum = interval_loss.item()
        if world.is_main:
            save_training_state(run.checkpoint, {
                "iteration": step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "config": cfg.model_dump(mode="json"),
                "rng": _rng_state(), "sampler": sampler.state_dict(),
                "progress": asdict(progress)})

    bar = _progress_bar(cfg, step, progress.train_time_s, show_progress and world.is_main)
    interval_tokens, interval_time = 0, 0.0
    interval_loss = torch.tensor(progress.loss_sum, device=device)
    status = "finished"
    try:
        with _stop_on_signals() as stop_requested:
            while not done():
                started = time.perf_counter()
                lr = learning_rate(cfg, step, progress.train_time_s)
                set_learning_rate(optimizer, lr)
                step_loss = torch.zeros((), device=device)
                for micro, (inputs, targets) in enumerate(sampler.next_step()):
                    # ranks average their gradients once per step, in the last backward
                    with world.no_sync(forward, sync=micro == tcfg.grad_accum - 1):
                        with autocast(device, amp_dtype):
                            logits = forward(inputs)
                        loss = cross_entropy(logits, targets) / tcfg.grad_accum
                        loss.backward()
                    step_loss += loss.detach()
                grad_norm = clip_grad_norm(params, max_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

                step += 1
                stop, elapsed = world.agree(stop_requested(), time.perf_counter() - started,
                                            device)
                progress.train_time_s += elapsed
                progress.tokens += cfg.tokens_per_step
                interval_time += elapsed
                interval_tokens += cfg.tokens_per_step
                interval_loss += step_loss  # stays on the device: no sync until we log
                progress.loss_steps += 1
                if progress.first_loss is None:
                    progress.first_loss = world.mean(step_loss).item()
                bar.update(1 if cfg.max_steps is not None else elapsed)

                if step % tcfg.log_interval == 0 or done():
                    train_loss = world.mean(interval_loss).item() / progress.loss_steps
                    log({"train/loss": train_loss, "train/lr": lr,
                         "train/grad_norm": grad_norm.item(),
                         "train/tokens_per_s": interval_tokens / interval_time})
                    bar.set_postfix(loss=f"{train_loss:.3f}",
                                    tok_s=f"{interval_tokens / interval_time:,.0f}")
                    interval_loss.zero_()
                    progress.loss_steps = 0
                    interval_tokens, interval_time = 0, 0.0
                    if _diverged(train_loss, progress.first_loss, tcfg.diverge_factor):
                        status = "diverged"
                        break
                if tcfg.eval_interval and step % tcfg.eval_interval == 0 and not done():
                    run_eval()
                if tcfg.ckpt_interval and step % tcfg.ckpt_interval == 0 and not done():
                    save()
                if stop:
                    status = "interrupted"
                    save()
                    break
        if status == "finished":
            run_eval()
            save()
    except BaseException:
        if world.is_main:
            run.set_status("failed")
        raise
    finally:
        bar.close()
        trackers.close()
    if world.is_main:
        run.set_status(status)
    return RunResult(run.root, status, step, progress.tokens, last)


def _for_world(config: Config, world: World) -> Config:
    """A copy of ``config`` with ``train.world_size`` from torchrun (checked when set)."""
    if "world_size" in config.train.model_fields_set and config.train.world_size != world.size:
        raise ConfigError(f"train.world_size={config.train.world_size} does not match the "
                          f"{world.size} process(es) started (torchrun's WORLD_SIZE): leave it "
                          f"unset, or start that many")
    config = config.model_copy(deep=True)
    config.train.world_size = world.size
    return config


def _resume_wanted(config: Config, run: RunDir) -> bool:
    """Whether to continue from the run's checkpoint, per ``run.resume``."""
    has_checkpoint = run.checkpoint.exists()
    if config.run.resume == "must" and not has_checkpoint:
        raise ConfigError(f"cannot resume: {run.checkpoint} does not exist")
    if config.run.resume == "never" and run.exists():
        raise ConfigError(f"run directory {run.root} already exists: resume it with --resume "
                          f"(or run.resume=auto), or choose another run.name")
    return has_checkpoint and config.run.resume != "never"


def _diverged(loss: float, first_loss: float | None, factor: float) -> bool:
    """A non-finite loss, or one far above where training started."""
    return not math.isfinite(loss) or (first_loss is not None and loss > factor * first_loss)


def _rng_state() -> dict:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _progress_bar(config: Config, step: int, train_time_s: float, enabled: bool) -> tqdm:
    """Steps done of max_steps or, for a time-budget-only run, seconds of the budget."""
    if config.max_steps is not None:
        return tqdm(total=config.max_steps, initial=step, unit="step", disable=not enabled,
                    dynamic_ncols=True)
    return tqdm(total=config.train.time_budget_s, initial=train_time_s, unit="s",
                disable=not enabled, dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s [{elapsed}<{remaining}{postfix}]")


@contextmanager
def _stop_on_signals() -> Iterator:
    """Turn the first SIGINT/SIGTERM into a request to stop after the current step (which then
    saves a checkpoint); a second SIGINT interrupts at once. Yields ``stop_requested()``."""
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
