"""Scale-out under `torchrun --nproc-per-node K` (or `accelerate launch`): every process scores a share of
each chunk's packed segments, balanced by tokens (`models.packing.rank_share`); rank 0 gathers them and
writes the files, so the output is the one a single process writes (same decisions; log-probs equal up to
batch-composition rounding).

Initialised from the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT):
nccl when the processes use CUDA devices, gloo otherwise. Without those variables everything here is
a no-op and the run is single-process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False      # True when this module created the process group (and must destroy it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world_size


def init_from_env(use_cuda: bool | None = None) -> DistContext:
    """Join the process group described by the environment, or return a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return DistContext()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=False)
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=True)


def device_for_rank(device: str, ctx: DistContext) -> str:
    """Under several processes, "auto"/"cuda" become this process's own GPU (cuda:LOCAL_RANK)."""
    if ctx.enabled and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{ctx.local_rank}"
    return device


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(ctx: DistContext, obj: Any) -> list[Any] | None:
    """[obj of rank 0, obj of rank 1, ...] on rank 0; None elsewhere."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        # Every rank waits for the others before tearing the group down. A gloo rank once aborted at exit
        # ("terminate called without an active exception") in a loaded full test run; the ordered
        # teardown is the suspected cure, not a proven one (the abort never reproduced in isolation).
        dist.barrier()
        dist.destroy_process_group()
