"""The training loop: from a config to a tracked, resumable run.

``train(config)`` builds a :class:`Session` (token files, model, optimizer, sampler, and the
checkpoint's state when resuming) and runs its :meth:`Session.loop`, one page read top to bottom:
steps of gradient accumulation -> clipping -> optimizer step under the cosine schedule, with
periodic logging, evaluation and checkpointing, until ``max_steps`` / ``max_tokens`` or the time
budget is spent.
Everything that makes a resumed run continue exactly (model, optimizer, step, RNG, the sampler's
position, running loss sums) is in the checkpoint. The library prints nothing itself: metrics go
to the trackers, ``show_progress`` draws a progress bar on stderr, and ``say`` (when given)
receives one-line notes: what a resume changes (:mod:`lmlab.training.resume`) and, whenever no
bar is drawn (a log file, ``--no-progress``, a sweep), a progress line every
:data:`PROGRESS_LINE_S` seconds.

Under ``torchrun`` every process runs this same loop on its own slice of each global batch (see
:mod:`lmlab.training.distributed`); rank 0 alone writes the run directory, logs and saves
checkpoints.
"""

import contextlib
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from lmlab.compute import peak_flops
from lmlab.config import Config, ModelConfig
from lmlab.device import (
    autocast,
    compiled,
    flush_denormals,
    resolve_device,
    resolve_dtype,
    resolve_matmul_dtype,
)
from lmlab.errors import CheckpointError, ConfigError, StorageError
from lmlab.loss import cross_entropy
from lmlab.nn import TransformerLM
from lmlab.optim import AdamW, Muon, clip_grad_norm, decayed
from lmlab.progress import bar_disabled
from lmlab.tokens import load_tokens, unigram_loss
from lmlab.training.batches import RandomBatches
from lmlab.training.checkpoint import (
    load_model,
    load_training_state,
    model_differences,
    restore_model,
    save_training_state,
)
from lmlab.training.distributed import World, distributed, world_from_env
from lmlab.training.divergence import DivergenceRules
from lmlab.training.evaluate import evaluate
from lmlab.training.lock import run_lock
from lmlab.training.resume import resume_notes, resume_wanted
from lmlab.training.rundir import RunDir
from lmlab.training.tracking import Trackers

PROGRESS_LINE_S = 30.0
"""Seconds between progress lines when no bar is drawn: often enough to show a run is alive,
rarely enough that a sweep's log stays readable."""


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
    recent_losses: list[float] = field(default_factory=list)
    best_smoothed_loss: float | None = None
    """The last logged losses and the best of their median since warmup, for the divergence
    rules (:mod:`lmlab.training.divergence`)."""
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
    reason: str | None = None
    """Why the run diverged (which rule, at which step); None otherwise."""
    already_done: bool = False
    """The run had ended before this call (a resume of a finished run): nothing was trained, and
    ``metrics`` are the last ones it logged."""


def learning_rate(config: Config, step: int, train_time_s: float) -> float:
    """The learning rate for optimizer step ``step`` (0-based).

    Linear warmup over ``optim.warmup_iters`` steps, then ``optim.schedule``'s decay (cosine,
    linear or warmup-stable-decay) down to ``optim.lr_min`` at ``cosine_cycle_iters`` (default:
    the last step) or, with ``train.schedule_over_time``, at the
    end of the time budget or at the last step, whichever comes first (so a time-budget preset
    cut short by ``train.max_steps`` still ends annealed); constant ``lr_max`` when neither end
    is known.
    """
    optim = config.optim
    if step < optim.warmup_iters:
        return optim.lr_max * step / optim.warmup_iters
    if config.train.schedule_over_time:
        fraction = train_time_s / config.train.time_budget_s  # type: ignore[operator]
        max_steps = config.max_steps
        if max_steps is not None and max_steps > optim.warmup_iters:
            fraction = max(fraction, (step - optim.warmup_iters) / (max_steps - optim.warmup_iters))
    else:
        cycle = config.cosine_cycle_iters
        if cycle is None:
            return optim.lr_max  # no end known: flat
        fraction = (step - optim.warmup_iters) / (cycle - optim.warmup_iters) if (
            cycle > optim.warmup_iters) else 1.0
    return decayed(fraction, optim.lr_max, optim.lr_min, optim.schedule, optim.decay_fraction)


def build_optimizer(model: TransformerLM, config: Config) -> torch.optim.Optimizer:
    """AdamW, or Muon for the blocks' weight matrices and AdamW for the rest (``optim.optimizer``).

    Weight decay applies to matrices only: norm gains (1-D) are not decayed, as in GPT-2. Each
    group's ``lr_scale`` is its peak learning rate over ``optim.lr_max``, so one schedule drives
    both optimizers (see :func:`set_learning_rate`). An untied embedding gets a group of its
    own when ``optim.embedding_lr`` gives it its own rate.
    """
    optim = config.optim
    params = list({id(p): p for p in model.parameters()}.values())  # a tied matrix once
    embedding = model.token_embeddings.weight
    own_rate = optim.embedding_lr is not None
    matrices = [p for p in params if p.dim() >= 2 and not (own_rate and p is embedding)]
    adamw_only = [{"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if own_rate:
        adamw_only.append({"params": [embedding], "weight_decay": optim.weight_decay,
                           "lr": optim.embedding_lr,
                           "lr_scale": optim.embedding_lr / optim.lr_max})
    adamw = dict(lr=optim.lr_max, betas=(optim.beta1, optim.beta2), eps=optim.eps)
    if optim.optimizer == "adamw":
        return AdamW([{"params": matrices, "weight_decay": optim.weight_decay}, *adamw_only],
                     **adamw)
    lookup_tables = {id(embedding), id(model.lm_head.weight)}
    return Muon([
        {"params": [p for p in matrices if id(p) not in lookup_tables], "algorithm": "muon",
         "lr": optim.muon_lr, "lr_scale": optim.muon_lr / optim.lr_max},
        {"params": [p for p in matrices if id(p) in lookup_tables], "algorithm": "adamw",
         "weight_decay": optim.weight_decay},
        *({**group, "algorithm": "adamw"} for group in adamw_only),
    ], momentum=optim.muon_momentum, weight_decay=optim.weight_decay,
        ns_dtype=resolve_matmul_dtype(optim.muon_dtype, params[0].device), **adamw)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group to ``lr`` times its ``lr_scale`` (1 unless the group has its own peak)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def train(config: Config, *, show_progress: bool = False,
          say: Callable[[str], None] | None = None) -> RunResult:
    """Train ``config`` in ``<runs_dir>/<name>``; see the module docstring for ``say``.

    Raises :class:`~lmlab.errors.ConfigError`, :class:`~lmlab.errors.DataError` or
    :class:`~lmlab.errors.CheckpointError` before writing anything when the inputs are bad.
    """
    world = world_from_env()
    config = _for_world(config, world)
    device = world.device(resolve_device(config.train.device))  # this rank's device, chosen once
    flush_denormals(device)
    with (distributed(world, device, config.train.dist_backend, config.train.dist_timeout_s),
          run_lock(config.run_dir) if world.is_main else nullcontext()):
        session = Session(config, world, device, say)
        if session.resumed and session.done() and session.run.status == "finished":
            return session.recorded_result()
        return session.loop(show_progress)


class Session:
    """One training session of a run: the model, optimizer, data and counters the loop works on.

    Built from the config, then (when resuming) restored from the run's checkpoint, so the
    :meth:`loop` that follows continues exactly where the saved run stopped. Its methods are the
    loop's steps: :meth:`train_step`, :meth:`log_training`, :meth:`evaluate`, :meth:`save`.
    """

    def __init__(self, config: Config, world: World, device: torch.device,
                 say: Callable[[str], None] | None = None) -> None:
        self.config, self.world, self.device = config, world, device
        self.say = say if say is not None and world.is_main else _silent
        """Where one-line notes go (rank 0 alone speaks)."""
        self.run = RunDir(config.run_dir)
        self.resumed = resume_wanted(config, self.run, self.say, may_write=world.is_main)
        world.barrier()  # every rank has looked at the run directory before rank 0 writes to it
        self.amp_dtype = resolve_dtype(config.train.dtype, device)
        model_config, tcfg = config.model, config.train
        train_data = load_tokens(config.data.train_path, vocab_size=model_config.vocab_size,
                                 context_length=model_config.context_length)
        self.valid_data = load_tokens(config.data.valid_path, vocab_size=model_config.vocab_size,
                                      context_length=model_config.context_length,
                                      tokenizer_of=config.data.train_path)

        torch.manual_seed(tcfg.seed)
        self.model = TransformerLM(model_config, device=device)
        self.optimizer = build_optimizer(self.model, config)
        self.sampler = RandomBatches(train_data.tokens, tcfg.batch_size,
                                     model_config.context_length, device, tcfg.seed,
                                     grad_accum=tcfg.grad_accum, rank=world.rank,
                                     world_size=world.size, sampling=config.data.sampling)
        self.divergence = DivergenceRules(tcfg.diverge_factor, tcfg.diverge_rise,
                                          config.optim.warmup_iters,
                                          unigram_loss(train_data.tokens))
        self.step, self.progress = 0, Progress()
        self.saved_step: int | None = None
        """The step of the last checkpoint on disk (the one a resume continues from)."""
        if tcfg.init_from is not None and not self.resumed:
            self.model.load_state_dict(_initial_weights(tcfg.init_from, model_config))
        if self.resumed:
            state = load_training_state(self.run.checkpoint, config)
            notes = resume_notes(state["config"], config)
            restore_model(state, self.model, self.optimizer, self.run.checkpoint)
            try:
                self.sampler.load_state_dict(state["sampler"])
            except CheckpointError as e:
                raise CheckpointError(f"{self.run.checkpoint}: {e}") from None
            _set_rng_state(state["rng"])
            for note in notes:  # once the checkpoint has loaded: an error is the only line
                self.say(note)
            self.step, self.progress = state["iteration"], Progress(**state["progress"])
            self.saved_step = self.step
        self.forward = world.wrap(compiled(self.model, device, self.say) if tcfg.compile
                                  else self.model, device)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.trackers = Trackers([])
        self.metrics: dict[str, float] = {}
        """The last logged value of each metric."""
        self.reason: str | None = None
        """Why the run diverged, when it did."""
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        peak = peak_flops(config, name, self.amp_dtype == torch.bfloat16)
        self.flops_per_peak = (self.model.flops_per_token() / peak) if peak else None
        """Training FLOPs per token over the device's peak FLOP/s: MFU = tokens/s x this."""
        self.lr, self.grad_norm = 0.0, torch.zeros(())
        """The last step's learning rate and gradient norm (before clipping)."""
        self.interval_tokens, self.interval_time = 0, 0.0
        self.interval_loss = torch.tensor(self.progress.loss_sum, device=device)
        """Tokens, seconds and summed loss since the last log (the loss stays on the device)."""
        self.session_start = time.perf_counter() - self.progress.wall_time_s

    def done(self) -> bool:
        """Whether the step or time budget is spent."""
        max_steps, budget = self.config.max_steps, self.config.train.time_budget_s
        out_of_steps = max_steps is not None and self.step >= max_steps
        out_of_time = budget is not None and self.progress.train_time_s >= budget
        return out_of_steps or out_of_time

    def fraction_done(self) -> float:
        """How much of its step or time budget the run has spent (the larger, when both)."""
        max_steps, budget = self.config.max_steps, self.config.train.time_budget_s
        return max(self.step / max_steps if max_steps else 0.0,
                   self.progress.train_time_s / budget if budget else 0.0)

    def loop(self, show_progress: bool) -> RunResult:
        """Train until done, diverged or stopped by a signal; evaluate and save at the end."""
        tcfg, world = self.config.train, self.world
        if world.is_main:
            self.trackers = Trackers.for_run(self.config, self.run,
                                             resume_step=self.step if self.resumed else None)
            self.run.write_config(self.config)
            self.run.write_env(self.device)
            self.run.set_status("running")
        bar = _progress_bar(self.config, self.step, self.progress.train_time_s,
                            show_progress and world.is_main)
        last_line = time.perf_counter()
        status = "finished"
        try:
            with bar, _stop_on_signals() as stop_requested:
                while not self.done():
                    stop, elapsed = self.train_step(stop_requested())
                    bar.update(1 if self.config.max_steps is not None else elapsed)
                    if self.step % tcfg.log_interval == 0 or self.done():
                        train_loss, tokens_per_s = self.log_training()
                        bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_s:,.0f}",
                                        **_mfu_shown(self.metrics))
                        if bar.disable and time.perf_counter() - last_line >= PROGRESS_LINE_S:
                            self.say(self.progress_line(train_loss, tokens_per_s))
                            last_line = time.perf_counter()
                        self.reason = self.divergence.check(train_loss, self.step, self.progress,
                                                            self.fraction_done())
                        if self.reason is not None:
                            status = "diverged"
                            break
                    if self._due(tcfg.eval_interval) and self.evaluate():
                        status = "diverged"
                        break
                    if self._due(tcfg.ckpt_interval):
                        self.save()
                    if stop:
                        status = "interrupted"
                        self.save()
                        break
            if status == "finished":
                if self.evaluate():
                    status = "diverged"
                self.save()
        except StorageError as exc:  # a full disk, a read-only folder: say what is safe
            self._mark_failed()
            raise StorageError(f"{exc} (last good checkpoint: {self._last_good()}; free the "
                               f"space or fix the folder, then resume)") from None
        except BaseException:
            self._mark_failed()
            raise
        finally:
            self.trackers.close()
        if world.is_main:
            self.run.set_status(status, self.reason)
        return self.result(status)

    def train_step(self, stop_requested: bool) -> tuple[bool, float]:
        """One optimizer step: ``grad_accum`` micro-batches, clipping, the update. Returns
        whether any rank wants to stop after it, and the step's seconds (the slowest rank's)."""
        config, world, device = self.config, self.world, self.device
        started = time.perf_counter()
        self.lr = learning_rate(config, self.step, self.progress.train_time_s)
        set_learning_rate(self.optimizer, self.lr)
        step_loss = torch.zeros((), device=device)
        for micro, (inputs, targets) in enumerate(self.sampler.next_step()):
            # ranks average their gradients once per step, in the last backward
            with world.no_sync(self.forward, sync=micro == config.train.grad_accum - 1):
                with autocast(device, self.amp_dtype):
                    logits = self.forward(inputs)
                loss = cross_entropy(logits, targets) / config.train.grad_accum
                loss.backward()
            step_loss += loss.detach()
        max_norm = config.optim.grad_clip if config.optim.grad_clip is not None else math.inf
        self.grad_norm = clip_grad_norm(self.params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

        self.step += 1
        stop, elapsed = world.agree(stop_requested, time.perf_counter() - started, device)
        self.progress.train_time_s += elapsed
        self.progress.tokens += config.tokens_per_step
        self.interval_time += elapsed
        self.interval_tokens += config.tokens_per_step
        self.interval_loss += step_loss  # stays on the device: no sync until we log
        self.progress.loss_steps += 1
        if self.progress.first_loss is None:
            self.progress.first_loss = world.mean(step_loss).item()
        return stop, elapsed

    def log_training(self) -> tuple[float, float]:
        """Log the mean loss and the throughput since the last log; return both."""
        train_loss = self.world.mean(self.interval_loss).item() / self.progress.loss_steps
        tokens_per_s = self.interval_tokens / self.interval_time
        mfu = {"train/mfu": tokens_per_s * self.flops_per_peak} if self.flops_per_peak else {}
        self._log({"train/loss": train_loss, "train/lr": self.lr,
                   "train/grad_norm": self.grad_norm.item(), "train/tokens_per_s": tokens_per_s,
                   **mfu})
        self.interval_loss.zero_()
        self.progress.loss_steps = 0
        self.interval_tokens, self.interval_time = 0, 0.0
        return train_loss, tokens_per_s

    def evaluate(self) -> bool:
        """Score the validation file (every rank its share of the batches) and log it; whether
        the score says the model diverged (then :attr:`reason` says why)."""
        tcfg = self.config.train
        metrics = evaluate(self.model, self.valid_data, batch_size=tcfg.batch_size,
                           context_length=self.config.model.context_length, device=self.device,
                           num_batches=tcfg.eval_batches, seed=tcfg.seed,
                           autocast_dtype=self.amp_dtype, world=self.world)
        self._log(metrics)
        self.reason = self.divergence.check_evaluation(metrics["val/loss"], self.step,
                                                       self.progress)
        return self.reason is not None

    def save(self) -> None:
        """Write the checkpoint that a resume continues from exactly (rank 0 writes it)."""
        self.progress.wall_time_s = time.perf_counter() - self.session_start
        # what every rank resumes from
        self.interval_loss.copy_(self.world.mean(self.interval_loss))
        self.progress.loss_sum = self.interval_loss.item()
        if self.world.is_main:
            save_training_state(self.run.checkpoint, {
                "iteration": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "config": self.config.model_dump(mode="json"), "rng": _rng_state(),
                "sampler": self.sampler.state_dict(), "progress": asdict(self.progress)})
            self.saved_step = self.step

    def _due(self, interval: int) -> bool:
        """Whether a periodic evaluation or checkpoint falls on this step (0: only at the end,
        which the loop's end does anyway)."""
        return interval > 0 and self.step % interval == 0 and not self.done()

    def _mark_failed(self) -> None:
        """Write the ``failed`` status when the disk still takes it (it may be full)."""
        if self.world.is_main:
            with contextlib.suppress(StorageError):
                self.run.set_status("failed")

    def _last_good(self) -> str:
        """The checkpoint a resume would continue from, in words."""
        if self.saved_step is None:
            return "none yet"
        return f"step {self.saved_step}, {self.run.checkpoint}"

    def result(self, status: str) -> RunResult:
        return RunResult(self.run.root, status, self.step, self.progress.tokens, self.metrics,
                         self.reason)

    def recorded_result(self) -> RunResult:
        """A finished run's last metrics, from its log: a resume with nothing left to train."""
        metrics: dict[str, float] = {}
        for record in self.run.read_metrics():
            metrics.update({k: v for k, v in record.items() if "/" in k})
        return RunResult(self.run.root, "finished", self.step, self.progress.tokens, metrics,
                         already_done=True)

    def progress_line(self, train_loss: float, tokens_per_s: float) -> str:
        """``step 1,200/4,000 (30%)  loss 3.412  lr 2.9e-03  12,345 tok/s  ETA 3m12s``: what a
        progress bar shows, as one line for a log."""
        # The last step of a time budget ends past it (a step is not cut short): at most 100%.
        fraction = min(self.fraction_done(), 1.0)
        of = f"/{self.config.max_steps:,}" if self.config.max_steps is not None else ""
        eta = ""
        if 0 < fraction < 1:
            left = round(self.progress.train_time_s * (1 - fraction) / fraction)
            eta = f"  ETA {left // 60}m{left % 60:02d}s"
        mfu = f"  MFU {self.metrics['train/mfu']:.1%}" if "train/mfu" in self.metrics else ""
        return (f"step {self.step:,}{of} ({fraction:.0%})  loss {train_loss:.3f}  "
                f"lr {self.lr:.2e}  {tokens_per_s:,.0f} tok/s{mfu}{eta}")

    def _log(self, metrics: dict[str, float]) -> None:
        self.progress.wall_time_s = time.perf_counter() - self.session_start
        self.trackers.log({"tokens": self.progress.tokens,
                           "wall_time_s": round(self.progress.wall_time_s, 3),
                           "train_time_s": round(self.progress.train_time_s, 3), **metrics},
                          self.step)
        self.metrics.update(metrics)


def _for_world(config: Config, world: World) -> Config:
    """A copy of ``config`` with ``train.world_size`` from torchrun (checked when set)."""
    if "world_size" in config.train.model_fields_set and config.train.world_size != world.size:
        raise ConfigError(f"train.world_size={config.train.world_size} does not match the "
                          f"{world.size} process(es) started (torchrun's WORLD_SIZE): leave it "
                          f"unset, or start that many")
    config = config.model_copy(deep=True)
    config.train.world_size = world.size
    return config


def _rng_state() -> dict:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _initial_weights(source: Path, wanted: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of ``train.init_from``, checked to be of the configured model (dropout, the
    attention kernel and the embedding's init aside, which change no loaded weight)."""
    model, config = load_model(source)
    differ = model_differences(config.model, wanted, ignoring=frozenset(
        {"dropout", "fused_attention", "embedding_std"}))
    if differ:
        raise ConfigError(f"train.init_from={source} holds another model: {'; '.join(differ)}")
    return model.state_dict()


def _mfu_shown(metrics: dict[str, float]) -> dict[str, str]:
    """The progress bar's MFU field, when the device's peak is known."""
    return {"mfu": f"{metrics['train/mfu']:.1%}"} if "train/mfu" in metrics else {}


def _silent(_: str) -> None:
    """The ``say`` of a caller that wants no notes."""


def _progress_bar(config: Config, step: int, train_time_s: float, enabled: bool) -> tqdm:
    """Steps done of max_steps or, for a time-budget-only run, seconds of the budget (drawn only
    when ``enabled`` and stderr is a terminal: its ``disable`` says whether it is)."""
    if config.max_steps is not None:
        return tqdm(total=config.max_steps, initial=step, unit="step",
                    disable=bar_disabled(enabled), dynamic_ncols=True)
    return tqdm(total=config.train.time_budget_s, initial=train_time_s, unit="s",
                disable=bar_disabled(enabled), dynamic_ncols=True,
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
