"""The CPU allocator setting init_distributed makes: freed memory is reused, not faulted in again every step."""

import os
import subprocess
import sys

FAULTS_OF_REALLOCATION = """
import resource, sys, torch
from edad_core.engine import init_distributed  # as a training process imports it (with transformers)

def faults(n=10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.empty(16 * 2**20).fill_(1.0)  # 64 MB, freed at once: above glibc's 32 MB mmap threshold
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults(1)  # warm-up: torch's own first-use allocations
if sys.argv[1] == "engine":
    assert init_distributed().device.type == "cpu"
print(faults())
"""


def _faults(mode: str, **env) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS_OF_REALLOCATION, mode], capture_output=True, text=True,
                         env=dict(os.environ, CUDA_VISIBLE_DEVICES="", **env), check=True)
    return int(out.stdout.split()[-1])


def test_a_cpu_process_reuses_freed_memory_instead_of_faulting_it_in_again():
    block = 64 * 2**20 // 4096  # pages
    # glibc maps and unmaps every 64 MB block: each of the ten allocations faults its pages in
    assert _faults("system") > 8 * block
    assert _faults("engine", EDAD_SYSTEM_MALLOC="1") > 8 * block  # the opt-out
    # the heap keeps the block: it is faulted in when the heap grows to hold it (measured: once or twice), then reused
    assert _faults("engine") < 4 * block


def test_the_hardware_a_run_records():
    """train_summary.json's device and device_count: on the CPU the processor's model name (from /proc/cpuinfo) and
    one per host; on GPUs the device's name and one per rank."""
    import torch

    from edad_core.distributed import DistInfo

    cpu = DistInfo(rank=0, world_size=4, local_rank=0, local_world_size=2, device=torch.device("cpu"))
    hardware = cpu.hardware()
    assert hardware["device_count"] == 2 and hardware["device"].startswith("CPU (")
    if os.path.exists("/proc/cpuinfo"):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        assert not names or hardware["device"] == f"CPU ({names[0]})"
    if torch.cuda.is_available():
        gpu = DistInfo(0, 4, 0, 4, torch.device("cuda", 0)).hardware()
        assert gpu == {"device": torch.cuda.get_device_name(0), "device_count": 4}
