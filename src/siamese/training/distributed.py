"""torch.distributed for training launched by torchrun: which rank this is, the global batch's
embeddings gathered WITH their gradient, and the few decisions every rank must share.

Launched as `torchrun --nproc-per-node N -m siamese train ...`, every rank runs the same
command: it reads the data, draws the same P x K batches and trains its share of each through
DistributedDataParallel. Only rank 0 writes the run folder, prints and validates.
"""

from __future__ import annotations

import datetime
import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str:
        """Where small tensors for collectives live (NCCL needs them on the GPU)."""
        return f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"


def from_env(device: str, timeout_minutes: float = 30.0) -> Dist:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, ...), or a world of one.

    gloo on CPU, NCCL on CUDA (each rank on the GPU of its LOCAL_RANK). A collective that waits
    longer than the timeout fails instead of hanging; torchrun stops the other ranks when one
    dies and exits non-zero."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    return Dist(rank, world, local, dist.get_backend())


def rank_device(device: str, d: Dist) -> str:
    """cuda -> cuda:<local rank> when several ranks share a machine."""
    return f"cuda:{d.local_rank}" if device == "cuda" and d.enabled else device


def check_batch(global_batch: int, d: Dist, classes: int, k: int) -> None:
    if global_batch % d.world:
        raise ConfigError(
            f"the global batch of {global_batch} ({classes} classes x {k} samples) does not "
            f"divide among {d.world} ranks; choose a train.batch_size whose classes x "
            f"samples_per_class is a multiple of {d.world}")


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each rank the gradient of its own rows.

    Every rank computes the same loss on the same gathered batch, so the gradient of its own
    rows is the full gradient for them; DDP then averages the parameter gradients over the
    ranks, so the backward scales by the world size to make that average the sum over ranks
    (as pytorch-metric-learning's DistributedLossWrapper does)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        ctx.rows, ctx.world, ctx.rank = len(x), world, rank
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        lo = ctx.rank * ctx.rows
        return grad[lo:lo + ctx.rows] * ctx.world


def gather(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """(B/W, ...) on each rank -> (B, ...) in rank order, the gradient flowing back to each
    rank's own rows; labels and other tensors without gradient are gathered the same way."""
    if not d.enabled:
        return x
    if x.requires_grad:
        return _GatherWithGrad.apply(x)
    parts = [torch.empty_like(x) for _ in range(d.world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def agree_max(value: float, d: Dist) -> float:
    """The largest value over the ranks (e.g. the schedule's progress, so all stop together)."""
    if not d.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t)


def from_main(obj, d: Dist):
    """Rank 0's `obj` on every rank (a decision, a small state dict)."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def first_on_each_machine(d: Dist, when: bool = True):
    """The body runs on each machine's local rank 0 first, then on its other ranks (e.g. to
    make a cache file once per machine that the others then read)."""
    wait = d.enabled and when
    if wait and d.local_rank != 0:
        dist.barrier()
    yield
    if wait and d.local_rank == 0:
        dist.barrier()


def finish(d: Dist) -> None:
    """Leave the group after a run that went well. (The other ranks do not wait for rank 0's
    evaluation: that can take longer than a collective's timeout.) After an error, nothing: the
    process exits non-zero and torchrun stops the others, which may be waiting in a collective
    that would never complete."""
    if d.enabled and dist.is_initialized():
        # DDP's reducer sits in reference cycles: collect it while the group is alive, or
        # its C++ threads are torn down at interpreter exit and abort the process.
        gc.collect()
        dist.destroy_process_group()
