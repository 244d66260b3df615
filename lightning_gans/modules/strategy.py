"""DDP for GAN modules: processes and data as Lightning's DDP, gradients averaged by the module.

A GAN iteration runs up to four backward passes (G main, path length, D main, R1; R1 and path
length through double backward) over different networks inside one training_step.
DistributedDataParallel's reducer expects one backward over a fixed parameter set per forward,
so instead of wrapping the module this strategy leaves it unwrapped and the module averages
each network's gradients with one all_reduce after each backward -- the scheme of the official
StyleGAN2-ADA training loop.
"""

from __future__ import annotations

import math
from datetime import timedelta

import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy
from torch import nn

from lightning_gans.errors import ConfigError

# Seconds a collective may wait for the other ranks before it raises (torch's default: 1800).
# A rank whose peer is gone without closing its connections -- its node lost power or dropped
# off the network, NCCL ranks after any peer crash -- otherwise blocks for half an hour before
# the job ends. It must exceed the longest time one rank works while the others wait in a
# collective: a checkpoint write by rank 0 and, at the first metrics evaluation, rank 0 computing
# the dataset's real statistics (cached afterwards). 15 min covers both for the paper configs on
# a local disk; raise it (trainer.strategy.timeout_s) for a slow shared file system.
DEFAULT_TIMEOUT_S = 900.0


class GANDDPStrategy(DDPStrategy):
    """`trainer=ddp`: DDPStrategy without the DistributedDataParallel wrapper.

    `timeout_s`: the process-group timeout in seconds (gloo: every collective and the
    rendezvous; NCCL: the watchdog, TORCH_NCCL_ASYNC_ERROR_HANDLING), DEFAULT_TIMEOUT_S by
    default. A rank that waits longer raises, the process exits non-zero and srun
    (`--kill-on-bad-exit=1` in slurm/train.sbatch) ends the job.
    """

    strategy_name = "gan_ddp"

    def __init__(self, *args, timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs) -> None:
        try:
            seconds = float(timeout_s)
        except (TypeError, ValueError):
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"trainer.strategy.timeout_s={timeout_s!r}: give the process-group "
                              "timeout in seconds, a number > 0 (default 900)")
        kwargs["timeout"] = timedelta(seconds=seconds)
        super().__init__(*args, **kwargs)
        self.timeout_s = seconds

    def configure_ddp(self) -> None:
        # Same initial weights everywhere: broadcast rank 0's parameters and buffers.
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for tensor in [*self.model.parameters(), *self.model.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def _register_ddp_hooks(self) -> None:  # no DDP wrapper, no comm hooks
        pass


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def average_grads(module: nn.Module) -> None:
    """Average the gradients of `module` over all processes (one flat all_reduce).

    Every rank passes the same parameters in the same order; a missing gradient counts as 0.
    """
    n = world_size()
    if n == 1:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    dist.all_reduce(flat)
    flat /= n
    offset = 0
    for p in params:
        numel = p.numel()
        chunk = flat[offset : offset + numel].view_as(p)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += numel


@torch.no_grad()
def average_tensor_(t: torch.Tensor) -> torch.Tensor:
    """In-place mean over processes (running statistics such as w_avg and pl_mean)."""
    n = world_size()
    if n > 1:
        dist.all_reduce(t)
        t /= n
    return t


def gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] (just [obj] without a process group)."""
    n = world_size()
    if n == 1:
        return [obj]
    out = [None] * n
    dist.all_gather_object(out, obj)
    return out
