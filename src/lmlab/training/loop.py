"""The training loop: from a config to a tracked, resumable run.

``train(config)`` builds a :class:`Session` (data, model, optimizer, sampler; the checkpoint's
state when resuming) and runs :meth:`Session.loop`: steps of gradient accumulation -> clipping ->
optimizer step under the learning-rate schedule (float16: :mod:`lmlab.training.precision`), with
logging, evaluation and checkpoints, until the step, token or time budget is spent. The
checkpoint holds all a resume needs to continue exactly; an exception leaves it as it was
(:func:`~lmlab.training.outcome.record_failure`). The library prints nothing: metrics go to the
trackers, progress to :mod:`lmlab.training.display`, one-line notes to ``say``. Under
``torchrun`` every rank runs this loop on its slice of each batch; rank 0 alone writes the run.
"""

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict

import torch

from lmlab.compute import peak_flops
from lmlab.config import Config
from lmlab.device import autocast, compiled, flush_denormals, resolve_device, resolve_dtype
from lmlab.errors import CheckpointError
from lmlab.loss import cross_entropy
from lmlab.nn import TransformerLM
from lmlab.optim import build_optimizer, clip_grad_norm, learning_rate, set_learning_rate
from lmlab.optim.schedule import check_schedule
from lmlab.tokens import load_tokens, unigram_loss
from lmlab.training.batch_probe import fit_batch
from lmlab.training.batches import RandomBatches
from lmlab.training.checkpoint import load_training_state, restore_model, save_training_state
from lmlab.training.display import ProgressDisplay
from lmlab.training.distributed import World, config_for_world, distributed, world_from_env
from lmlab.training.divergence import DivergenceRules
from lmlab.training.evaluate import evaluate
from lmlab.training.lock import run_lock
from lmlab.training.outcome import RunResult, record_failure
from lmlab.training.precision import LossScaler
from lmlab.training.resume import resume_notes, resume_wanted
from lmlab.training.rundir import RunDir
from lmlab.training.signals import stop_on_signals
from lmlab.training.state import Progress, rng_state, set_rng_state
from lmlab.training.tracking import Trackers
from lmlab.weights import initial_weights


def train(config: Config, *, show_progress: bool = False,
          say: Callable[[str], None] | None = None) -> RunResult:
    """Train ``config`` in ``<runs_dir>/<name>``. Bad inputs raise a one-line
    :class:`~lmlab.errors.LmlabError` before anything is written."""
    world = world_from_env()
    config = config_for_world(config, world)
    device = world.device(resolve_device(config.train.device))  # this rank's device, chosen once
    flush_denormals(device)
    config = fit_batch(config, device, world.size, say if world.is_main else None)  # any "auto"
    check_schedule(config, say if world.is_main else None)  # its errors before anything runs
    with (distributed(world, device, config.train.dist_backend, config.train.dist_timeout_s),
          run_lock(config.run_dir) if world.is_main else contextlib.nullcontext()):
        session = Session(config, world, device, say)
        if session.resumed and session.done() and session.run.status == "finished":
            return session.recorded_result()
        return session.loop(show_progress)


class Session:
    """One training session of a run: the model, optimizer, data and counters the loop works on,
    built from the config and (when resuming) restored from the checkpoint, so that
    :meth:`loop` continues exactly where the saved run stopped."""

    def __init__(self, config: Config, world: World, device: torch.device,
                 say: Callable[[str], None] | None = None) -> None:
        self.config, self.world, self.device = config, world, device
        self.say = say if say is not None and world.is_main else lambda line: None
        """Where one-line notes go (rank 0 alone speaks)."""
        self.run = RunDir(config.run_dir)
        self.resumed = resume_wanted(config, self.run, self.say, may_write=world.is_main)
        world.barrier()  # every rank has looked at the run directory before rank 0 writes to it
        self.amp_dtype = resolve_dtype(config.train.dtype, device)
        self.scaler = LossScaler(self.amp_dtype, device)
        self._build()
        self.step, self.progress = 0, Progress()
        self.saved_step: int | None = None
        """The step of the last checkpoint on disk (the one a resume continues from)."""
        if self.resumed:
            self._restore()
        elif config.train.init_from is not None:
            self.model.load_state_dict(initial_weights(config.train.init_from, config.model))
        self.forward = world.wrap(compiled(self.model, device, self.say) if config.train.compile
                                  else self.model, device)
        self.trackers = Trackers([])
        self.metrics: dict[str, float] = {}
        """The last logged value of each metric."""
        self.reason: str | None = None
        """Why the run diverged, when it did."""
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        peak = peak_flops(config, name, self.amp_dtype)
        self.flops_per_peak = self.model.flops_per_token() / peak if peak else None
        """Training FLOPs per token over the device's peak FLOP/s: MFU = this x tokens a second."""
        self.lr, self.grad_norm = 0.0, torch.zeros(())
        """The last step's learning rate and gradient norm (before clipping)."""
        self.interval_tokens, self.interval_time = 0, 0.0
        self.unlogged = [torch.tensor(loss, device=device) for loss, _ in self.progress.unlogged]
        self.unlogged_fractions = [fraction for _, fraction in self.progress.unlogged]
        """Tokens, seconds, and each step's loss (on the device until the log) and fraction of
        the budget spent, since the last log."""
        self.session_start = time.perf_counter() - self.progress.wall_time_s

    def _build(self) -> None:
        """The token files (checked against the model), the seeded model, its optimizer, the
        batch sampler and the divergence rules."""
        config = self.config
        tcfg, data, model = config.train, config.data, config.model
        train_tokens = load_tokens(data.train_path, vocab_size=model.vocab_size,
                                   context_length=model.context_length).tokens
        self.valid_data = load_tokens(data.valid_path, vocab_size=model.vocab_size,
                                      context_length=model.context_length,
                                      tokenizer_of=data.train_path)
        torch.manual_seed(tcfg.seed)
        self.model = TransformerLM(config.model, device=self.device)
        self.optimizer = build_optimizer(self.model, config)
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.sampler = RandomBatches(train_tokens, tcfg.batch_size, config.model.context_length,
                                     self.device, tcfg.seed, grad_accum=tcfg.grad_accum,
                                     rank=self.world.rank, world_size=self.world.size,
                                     sampling=config.data.sampling)
        self.divergence = DivergenceRules(tcfg.diverge_factor, tcfg.diverge_rise,
                                          config.optim.warmup_iters, unigram_loss(train_tokens))

    def _restore(self) -> None:
        """Continue from the run's checkpoint: weights, optimizer, data position, RNG and
        counters; then say what the resume changes (an error is the only line if it cannot)."""
        state = load_training_state(self.run.checkpoint, self.config)
        notes = resume_notes(state["config"], self.config)
        restore_model(state, self.model, self.optimizer, self.run.checkpoint)
        try:
            self.sampler.load_state_dict(state["sampler"])
        except CheckpointError as e:
            raise CheckpointError(f"{self.run.checkpoint}: {e}") from None
        set_rng_state(state["rng"])
        self.scaler.restore(state.get("scaler"))
        for note in notes:
            self.say(note)
        self.step, self.progress = state["iteration"], Progress.from_saved(state["progress"])
        self.saved_step = self.step

    def done(self) -> bool:
        """Whether the step or time budget is spent."""
        return self.fraction_done() >= 1.0

    def fraction_done(self) -> float:
        """How much of its step or time budget the run has spent (the larger, when both)."""
        max_steps, budget = self.config.max_steps, self.config.train.time_budget_s
        return max(self.step / max_steps if max_steps else 0.0,
                   self.progress.train_time_s / budget if budget else 0.0)

    def loop(self, show_progress: bool) -> RunResult:
        """Train until done, diverged or stopped by a signal; evaluate and save at the end."""
        tcfg = self.config.train
        if self.world.is_main:
            self.trackers = Trackers.for_run(self.config, self.run,
                                             resume_step=self.step if self.resumed else None)
            self.run.start(self.config, self.device)
        display = ProgressDisplay(self.config, self.step, self.progress.train_time_s,
                                  show_progress and self.world.is_main, self.say)
        status = "finished"
        try:
            with display, stop_on_signals() as stop_requested:
                while not self.done():
                    stop, elapsed = self.train_step(stop_requested())
                    display.advance(elapsed)
                    if self.step % tcfg.log_interval == 0 or self.done():
                        if self.log_training(display):
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
            if self.world.is_main:  # before the trackers close: trackio records how it ended
                self.run.set_status(status, self.reason)
        except BaseException as exc:  # out of memory, a full disk: one line; the rest as it is
            error = record_failure(exc, self.config, self.device, self.saved_step,
                                   writes=self.world.is_main)
            if error is None:
                raise
            raise error from None
        finally:
            self.trackers.close()
        return RunResult(self.run.root, status, self.step, self.progress.tokens, self.metrics,
                         self.reason)

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
                self.scaler.scale(loss).backward()
            step_loss += loss.detach()
        max_norm = config.optim.grad_clip if config.optim.grad_clip is not None else math.inf
        self.scaler.unscale_(self.optimizer)  # clip the true gradients
        self.grad_norm = clip_grad_norm(self.params, max_norm)
        self.scaler.step(self.optimizer)  # skipped when a gradient overflowed
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

        self.step += 1
        stop, elapsed = world.agree(stop_requested, time.perf_counter() - started, device)
        self.progress.train_time_s += elapsed
        self.progress.tokens += config.tokens_per_step
        self.interval_time += elapsed
        self.interval_tokens += config.tokens_per_step
        self.unlogged.append(step_loss)
        self.unlogged_fractions.append(self.fraction_done())
        if self.progress.first_loss is None:
            self.progress.first_loss = world.mean(step_loss).item()
        return stop, elapsed

    def log_training(self, display: ProgressDisplay) -> bool:
        """Log and show the mean loss and the throughput since the last log; whether the
        divergence rules, judging each of its steps, stop the run (then :attr:`reason` says why)."""
        losses = self.world.mean(torch.stack(self.unlogged)).tolist()  # one sync per log
        train_loss = math.fsum(losses) / len(losses)
        tokens_per_s = self.interval_tokens / self.interval_time
        mfu = tokens_per_s * self.flops_per_peak if self.flops_per_peak else None
        self._log({"train/loss": train_loss, "train/lr": self.lr,
                   "train/grad_norm": self.grad_norm.item(), "train/tokens_per_s": tokens_per_s,
                   **({"train/mfu": mfu} if mfu is not None else {}), **self.scaler.metrics()})
        self.reason = self.divergence.check_steps(losses, self.unlogged_fractions, self.step,
                                                  self.progress)
        self.unlogged, self.unlogged_fractions = [], []
        self.interval_tokens, self.interval_time = 0, 0.0
        display.show(step=self.step, fraction=self.fraction_done(),
                     train_time_s=self.progress.train_time_s, loss=train_loss, lr=self.lr,
                     tokens_per_s=tokens_per_s, mfu=mfu)
        return self.reason is not None

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
        # the steps since the last log, their losses averaged over ranks: what every rank resumes
        losses = self.world.mean(torch.stack(self.unlogged)).tolist() if self.unlogged else []
        self.progress.unlogged = [[loss, fraction] for loss, fraction
                                  in zip(losses, self.unlogged_fractions, strict=True)]
        if self.world.is_main:
            save_training_state(self.run.checkpoint, {
                "iteration": self.step, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "config": self.config.model_dump(mode="json"), "rng": rng_state(),
                "sampler": self.sampler.state_dict(), "progress": asdict(self.progress)})
            self.saved_step = self.step

    def _due(self, interval: int) -> bool:
        """Whether a periodic evaluation or checkpoint falls on this step (0: at the end only)."""
        return interval > 0 and self.step % interval == 0 and not self.done()

    def recorded_result(self) -> RunResult:
        """A finished run's last metrics, from its log: a resume with nothing left to train."""
        return RunResult(self.run.root, "finished", self.step, self.progress.tokens,
                         self.run.last_metrics(), already_done=True)

    def _log(self, metrics: dict[str, float]) -> None:
        self.progress.wall_time_s = time.perf_counter() - self.session_start
        self.trackers.log({"tokens": self.progress.tokens,
                           "wall_time_s": round(self.progress.wall_time_s, 3),
                           "train_time_s": round(self.progress.train_time_s, 3), **metrics},
                          self.step)
        self.metrics.update(metrics)

