"""Data-parallel training across processes with ``torch.distributed`` (DDP).

Launch with ``torchrun``; nothing here starts processes itself::

    torchrun --nproc_per_node 8 -m stream.cli.encoder train --data FILE --format sasrec --device cuda

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_from_env` turns them into a process group (NCCL on
CUDA, gloo on CPU) and pins each rank to its local GPU. With ``WORLD_SIZE``
unset or 1 every helper here is a no-op, so the single-process path is the
same code. The trainer wraps the model in ``DistributedDataParallel``, shards
the batches by rank and makes every rank stop together (see ``trainer.py``).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_active() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: str = "auto") -> bool:
    """Join the process group ``torchrun`` describes; True if this call created it.

    ``device`` picks the backend: NCCL when training on CUDA, gloo otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available() or dist.is_initialized():
        return False
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True


def shutdown() -> None:
    """Leave the process group (safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_min(value: torch.Tensor) -> torch.Tensor:
    """The minimum of ``value`` over all ranks (itself when not distributed)."""
    if not is_active():
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's ``value`` on every rank."""
    if not is_active():
        return int(value)
    tensor = torch.tensor([int(value)], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision (e.g. "stop training") on every rank."""
    return bool(broadcast_int(int(flag), device))
