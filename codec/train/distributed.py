"""Multi-process training under `torchrun`: process-group set-up and small collectives.

`torchrun --nproc_per_node N` sets RANK, WORLD_SIZE and LOCAL_RANK; `setup` reads them
and joins the group (NCCL on GPU, gloo on CPU). Without them it is a single process and
every helper here is a no-op, so the trainer has one code path.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from codec.errors import CodecError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> DistInfo:
    """Join the process group started by torchrun (if any) and pick the device.

    `device` is "auto" (CUDA when available), "cpu" or "cuda". Each process of a
    multi-GPU job takes the GPU of its LOCAL_RANK.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(minutes=30),
        )
    return DistInfo(rank, world_size, local_rank, dev)


def pick_device(name: str, setting: str) -> torch.device:
    """The device a single-process job runs on: "auto" is CUDA when there is one, "cpu"
    or "cuda"; asking for CUDA without one is an error that names `setting`."""
    if name == "cuda" and not torch.cuda.is_available():
        raise CodecError(f"{setting}: no CUDA device is available")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def cleanup() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average a dict of floats (losses for logging) over all processes."""
    if not is_distributed() or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(values, t.tolist(), strict=True))


def gather_objects(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (just `[obj]` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
