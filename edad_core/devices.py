"""A GPU lease for jobs that Snakemake runs side by side: Snakemake counts `resources: gpu=1` but assigns no
device, so each job claims a free one itself.

    python -m edad_core.devices --locks work/gpu_locks -- python workflow_scripts/finetune.py ...

takes an exclusive `flock` on `<locks>/gpu<i>.lock` for the first free device i, sets CUDA_VISIBLE_DEVICES=i and
replaces itself with the command (exec), which inherits the lock: the device is held exactly as long as the job's
process lives, and the kernel releases it when the process exits or is killed. With every device busy it waits;
without a GPU the command runs on the CPU (CUDA_VISIBLE_DEVICES=""). The number of devices is
torch.cuda.device_count(), or EDAD_GPUS when set (tests use fake devices).
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)


def device_count() -> int:
    if "EDAD_GPUS" in os.environ:
        return int(os.environ["EDAD_GPUS"])
    import torch  # only when needed: the launcher should start fast

    return torch.cuda.device_count()


def claim(locks: Path, n_devices: int, poll_seconds: float = 1.0) -> tuple[int, int]:
    """(device index, open lock fd) of a free device, waiting while all are busy."""
    locks.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for i in range(n_devices):
            fd = os.open(locks / f"gpu{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return i, fd
        if not waited:
            log.info("all %d GPUs are claimed by other jobs (%s); waiting", n_devices, locks)
            waited = True
        time.sleep(poll_seconds)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--locks", required=True, type=Path, help="folder of the per-device lock files")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run on the claimed device")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given (put it after --)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    n = device_count()
    if n == 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    else:
        device, fd = claim(args.locks, n)
        os.set_inheritable(fd, True)  # the lock stays with the command's process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(device)
        log.info("claimed GPU %d", device)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
