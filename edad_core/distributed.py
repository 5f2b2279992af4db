"""Process-group setup for torchrun (DDP) and plain single-process runs.

    dist = init_distributed()          # DistInfo: rank, world_size, local_rank, device, is_main
    ...; barrier(); destroy_distributed()

`init_distributed()` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE): backend NCCL
on CUDA, gloo on CPU, CUDA device = local rank. Without torchrun it is one process and no process group. Each
process gets its share of the CPU threads, because Snakemake sets OMP_NUM_THREADS to the rule's `threads` and
torchrun passes the same value to every rank. On the CPU, malloc is told to keep freed memory (`keep_freed_memory`).
"""

import ctypes
import ctypes.util
import functools
import logging
import os
import platform
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

# mallopt(3) parameters of glibc's malloc.h
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


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

    def hardware(self) -> dict:
        """What the run computes on, for train_summary.json: {"device": a GPU's name (rank 0's) or "CPU (<model
        name>)", "device_count": GPUs (one per rank), or hosts for a CPU run}."""
        if self.device.type == "cuda":
            return {"device": torch.cuda.get_device_name(self.device), "device_count": self.world_size}
        model = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
        except OSError:  # not Linux
            pass
        return {"device": f"CPU ({model})", "device_count": self.world_size // self.local_world_size}


def _available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc serve every size from its heap and never give freed memory back to the OS. By default a
    block over 32 MB (an embedding-sized gradient, an optimizer temporary: 54 MB for exBERT's 17,658 x 768
    extension table) is mmap'd and unmapped on free, so a training step that allocates it afresh page-faults on
    every 4 KB of it, every step: 13 ms to allocate and fill that table's size instead of 2.5 ms here, and 4% of
    an EDAD step at paper sizes (BENCHMARKS.md). The process then stays at its peak size, which a training
    process reaches in its first step anyway. Returns False (and changes nothing) off glibc, or with the
    environment variable EDAD_SYSTEM_MALLOC=1."""
    if os.environ.get("EDAD_SYSTEM_MALLOC") == "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only: mallopt's parameters differ elsewhere
    except (OSError, AttributeError):
        return False
    kept = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1)))
    log.info("malloc keeps freed memory for reuse (no mmap, no trim): %s", kept)
    return kept


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
        keep_freed_memory()
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
