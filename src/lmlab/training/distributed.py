"""Data-parallel training across processes (``torchrun``), kept out of the model.

torchrun starts one process per device and tells each its place through the environment
(``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``). :func:`distributed`
joins those processes into a process group, :meth:`World.wrap` puts the model in PyTorch's
``DistributedDataParallel`` (which averages gradients across ranks during ``backward``), and the
small collectives here let every rank take the same decisions (log the same loss, stop at the same
step). The model code knows nothing of any of this, as in torchtitan. A plain ``python`` process
is a world of one, where every helper is a no-op. :func:`launch` is ``lmlab train --nproc N``.
"""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from lmlab.config import Config
from lmlab.errors import ConfigError, DistributedError, first_line
from lmlab.text import plural


@dataclass(frozen=True)
class World:
    """This process's place among the processes training together."""

    rank: int = 0
    local_rank: int = 0
    """Rank among the processes on this machine: which GPU this process drives."""
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run directory, logs, draws the progress bar and saves checkpoints."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` when training on GPUs, else ``device``."""
        if self.size == 1 or device.type != "cuda":
            return device
        if device.index is not None:
            raise ConfigError(f"train.device={device} names one GPU, but torchrun started "
                              f"{self.size} processes: use train.device=cuda (each rank takes "
                              f"the GPU of its LOCAL_RANK)")
        if self.local_rank >= torch.cuda.device_count():
            raise ConfigError(f"rank {self.rank} needs GPU {self.local_rank}, but only "
                              f"{torch.cuda.device_count()} are visible: start at most that many "
                              f"processes per node")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` in DistributedDataParallel (itself when alone).

        Pass the compiled model, if any: the PyTorch docs advise compiling the inner module and
        wrapping it, rather than compiling the wrapper. DDP starts by copying rank 0's weights to
        every rank, so all ranks begin (and, on resume, continue) from the same model.
        """
        if self.size == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def no_sync(self, model: nn.Module, sync: bool) -> AbstractContextManager:
        """Skip the gradient all-reduce of this backward unless ``sync``: the micro-steps of
        gradient accumulation before the last add up locally, and only the last one averages
        the summed gradients across ranks."""
        if sync or not isinstance(model, DistributedDataParallel):
            return nullcontext()
        return model.no_sync()

    def mean(self, value: Tensor) -> Tensor:
        """The mean of ``value`` over all ranks (``value`` itself when alone)."""
        if self.size == 1:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)  # a sum: gloo has no average
        return total / self.size

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Each of ``values`` summed over all ranks (in float64)."""
        if self.size == 1:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.tolist()

    def agree(self, stop: bool, seconds: float, device: torch.device) -> tuple[bool, float]:
        """Whether any rank wants to stop, and the longest time any rank measured.

        Time budgets and signals are seen by each rank on its own; one tiny all-reduce per step
        makes every rank stop at the same step (a rank that stopped alone would leave the others
        waiting in the next gradient all-reduce) and count the same training time.
        """
        if self.size == 1:
            return stop, seconds
        both = torch.tensor([float(stop), seconds], dtype=torch.float64, device=device)
        dist.all_reduce(both, op=dist.ReduceOp.MAX)
        flag, longest = both.tolist()
        return bool(flag), longest

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.size > 1:
            dist.barrier()


ALONE = World()
"""A plain process: a world of one."""


def world_from_env() -> World:
    """The world torchrun describes in the environment; a world of one without torchrun."""
    try:
        return World(rank=int(os.environ.get("RANK", 0)),
                     local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                     size=int(os.environ.get("WORLD_SIZE", 1)))
    except ValueError:
        raise ConfigError("RANK, LOCAL_RANK and WORLD_SIZE must be integers (torchrun sets "
                          "them)") from None


def config_for_world(config: Config, world: World) -> Config:
    """A copy of ``config`` with ``train.world_size`` from torchrun (checked when set)."""
    if "world_size" in config.train.model_fields_set and config.train.world_size != world.size:
        raise ConfigError(f"train.world_size={config.train.world_size} does not match the "
                          f"{plural(world.size, 'process', 'processes')} started (torchrun's "
                          f"WORLD_SIZE): leave it unset, or start that many")
    config = config.model_copy(deep=True)
    config.train.world_size = world.size
    return config


def backend_for(name: str, device: torch.device) -> str:
    """The process-group backend for ``train.dist_backend``: nccl for CUDA, gloo otherwise."""
    if name == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if name == "nccl" and (device.type != "cuda" or not dist.is_nccl_available()):
        raise ConfigError(f"train.dist_backend=nccl needs CUDA GPUs, but this rank trains on "
                          f"{device}: use train.dist_backend=gloo (or auto)")
    return name


@contextmanager
def distributed(world: World, device: torch.device, backend: str,
                timeout_s: float) -> Iterator[None]:
    """Join torchrun's process group for the duration of a run, on this rank's ``device``
    (:meth:`World.device`).

    ``timeout_s`` bounds how long a collective waits for a rank that stopped answering, so a
    failure elsewhere ends this rank with an error instead of a hang (torchrun also tears the
    whole job down when one rank exits with an error). That error, raised deep inside a
    collective, becomes a one-line :class:`DistributedError`: the failed rank has said what went
    wrong. A group that the caller already set up is used as is and left alone; so is a world of
    one, which needs no group.

    Only a run that ends well tears the group down: after a failure the peers may still be inside
    a collective, and destroying the group under them can abort this process (a gloo rank died of
    SIGABRT after printing its error, so the job reported the signal instead of the error). The
    process is about to exit anyway (``lmlab.cli.main`` ends it with ``os._exit`` so that the
    interpreter's teardown does not destroy the group either), and torchrun ends the others. A
    run that ends well waits at a barrier first, so no rank closes its connections while another
    is still at work (rank 0 writes the last checkpoint alone): a rank that tore down early was
    seen to die of SIGABRT ("terminate called without an active exception") in a 2-rank gloo job
    that had finished.
    """
    backend = backend_for(backend, device)  # checked even when alone
    own_group = world.size > 1 and not dist.is_initialized()
    if own_group:  # bound to this rank's GPU, so NCCL sets up its connections at once
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    try:
        yield
    except RuntimeError as exc:
        if world.size > 1 and _lost_a_peer(exc):
            raise DistributedError(f"stopped: another rank failed or stopped answering (see "
                                   f"its error): {_gist(exc)}") from None
        raise
    if own_group:
        dist.barrier()
        dist.destroy_process_group()


def _gist(exc: RuntimeError) -> str:
    """The first sentence of a gloo or NCCL message, without the source location in front.

    >>> _gist(RuntimeError("[/gloo/pair.cc:553] Connection closed by peer [::1]:80. This is..."))
    'Connection closed by peer [::1]:80'
    """
    return re.sub(r"^\[[^\]]*\]\s*", "", first_line(exc)).split(". ")[0][:200]


def _lost_a_peer(exc: RuntimeError) -> bool:
    """Whether ``exc`` is a collective that failed because another rank went away: gloo and NCCL
    raise plain ``RuntimeError``s (from DDP's hooks inside ``backward`` too), so their messages
    are what tells."""
    if isinstance(exc, dist.DistError):
        return True
    message = str(exc)
    return any(mark in message for mark in ("gloo", "NCCL", "closed by peer", "reset by peer"))


def launch(nproc: int, lmlab_args: Sequence[str]) -> int:
    """Run ``python -m lmlab LMLAB_ARGS`` on ``nproc`` processes of this machine under torchrun
    (:mod:`lmlab.training.torchrun`) and return its exit code.

    ``--standalone`` picks a free port for the rendezvous, so several jobs can share a machine.
    Ctrl-C reaches torchrun and its workers directly (they share the terminal's process group),
    so this launcher ignores it and waits for them to save their checkpoint and stop.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    command = [sys.executable, "-m", "lmlab.training.torchrun", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "lmlab", *lmlab_args]
    with subprocess.Popen(command) as job:  # started first: the job keeps the default SIGINT
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return job.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
