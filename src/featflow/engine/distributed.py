"""Many processes, one job: PyTorch's own distributed engine under ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` for every process it starts; ``init_distributed``
reads them and joins the process group, with NCCL when the process has a GPU and gloo on the CPU. Without those
variables everything runs as one process (rank 0 of 1) and nothing here does any communication.

- Training: each rank takes its share of every global batch (``local_batch``); gradients are averaged by
  DistributedDataParallel; only rank 0 (``is_main``) writes checkpoints, logs and reports.
- Evaluation: videos are dealt out to ranks (``shard``) and the per-rank results gathered (``gather``), so the
  merged numbers are those of one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from featflow.errors import FeatflowError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CONTEXT = DistContext()


def context() -> DistContext:
    """The current process's place in the job (rank 0 of 1 unless ``init_distributed`` joined a group)."""
    return _CONTEXT


def init_distributed(device: str | None = None) -> DistContext:
    """Join the job ``torchrun`` started (``WORLD_SIZE`` > 1), or stay a single process. The backend follows the
    device: NCCL with CUDA (one GPU per local rank), gloo on the CPU. ``device``: "cpu", "cuda" or None (CUDA
    when available)."""
    global _CONTEXT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise FeatflowError("--device cuda: no CUDA device is available here")
    target = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1)) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    _CONTEXT = DistContext(rank, dist.get_world_size() if dist.is_initialized() else 1, local_rank, target)
    return _CONTEXT


def shutdown() -> None:
    """Leave the process group (if any) and go back to a single process."""
    global _CONTEXT
    if dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = DistContext()


def local_batch(global_batch: int, ctx: DistContext | None = None) -> int:
    """Each rank's share of a global batch; the global batch must divide evenly."""
    ctx = ctx or context()
    if global_batch % ctx.world_size:
        raise FeatflowError(f"train.batch_size {global_batch} does not divide among {ctx.world_size} processes")
    return global_batch // ctx.world_size


def shard(items: list[T], ctx: DistContext | None = None) -> list[T]:
    """This rank's share of ``items`` (every world_size-th one, from its rank)."""
    ctx = ctx or context()
    return items[ctx.rank::ctx.world_size]


def gather(value: Any, ctx: DistContext | None = None) -> list[Any]:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
    ctx = ctx or context()
    if not ctx.distributed:
        return [value]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def unshard(parts: list[list[T]]) -> list[T]:
    """Undo ``shard``: per-rank lists (rank order) -> the items in their original order."""
    merged: list[T] = []
    for i in range(max((len(p) for p in parts), default=0)):
        merged += [p[i] for p in parts if i < len(p)]
    return merged


def barrier(ctx: DistContext | None = None) -> None:
    if (ctx or context()).distributed:
        dist.barrier()


def mean_over_ranks(value: float, ctx: DistContext | None = None) -> float:
    """The mean of a number over ranks (the global batch's loss from the per-rank losses)."""
    ctx = ctx or context()
    if not ctx.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world_size


def broadcast_buffers(module: torch.nn.Module, ctx: DistContext | None = None) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, so all ranks hold the same model."""
    ctx = ctx or context()
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, 0)
