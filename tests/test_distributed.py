"""The CPU allocator setting init_distributed makes: freed memory is reused, not faulted in again every step."""

import os
import subprocess
import sys

FAULTS_OF_REALLOCATION = """
import resource, sys, torch
from edad_core.distributed import init_distributed

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
