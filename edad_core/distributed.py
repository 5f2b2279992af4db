"""Process-group setup for torchrun (DDP) and plain single-process runs.

    dist = init_distributed()          # DistInfo: rank, world_size, local_rank, device, is_main
    ...; barrier(); destroy_distributed()

`init_distributed()` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE): backend NCCL
on CUDA, gloo on CPU, CUDA device = local rank. Without torchrun it is one process and no process group. Each
process gets its share of the CPU threads, because Snakemake sets OMP_NUM_THREADS to the rule's `threads` and
torchrun passes the same value to every rank.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def init_distributed() -> DistInfo:
    """Join torchrun's process group (idempotent) and pin this process to its device and thread share."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    threads = int(os.environ.get("OMP_NUM_THREADS") or _available_cpus())
    torch.set_num_threads(max(1, threads // local_world_size))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group(backend="nccl", device_id=device)  # binds NCCL to this rank's GPU
        else:
            dist.init_process_group(backend="gloo")
    return DistInfo(rank, world_size, local_rank, local_world_size, device)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def synchronize(device: torch.device) -> None:
    """Wait for this device's queued work and for every rank (before reading a clock)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    barrier()


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
