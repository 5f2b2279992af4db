"""A GPU lease for jobs that Snakemake runs side by side: Snakemake counts `resources: gpu=1` but assigns no
device, so each job claims a free one itself.

    python -m edad_core.devices --locks work/gpu_locks -- python workflow_scripts/finetune.py ...

takes an exclusive `flock` on `<locks>/<host>/gpu<id>.lock` for the first free device (one folder per host: a
cluster's nodes may share work/, not their GPUs), sets CUDA_VISIBLE_DEVICES=<id> and
replaces itself with the command (exec), which inherits the lock: the device is held exactly as long as the job's
process lives, and the kernel releases it when the process exits or is killed. With every device busy it waits;
without a GPU the command runs on the CPU (CUDA_VISIBLE_DEVICES=""). The devices are those listed in
CUDA_VISIBLE_DEVICES when it is set (a cluster scheduler's allocation: its ids are leased, not 0..n-1, which would
name other jobs' GPUs; a negative id ends the list, as in CUDA: CUDA_VISIBLE_DEVICES=-1 is the CPU), else
0..torch.cuda.device_count()-1; EDAD_GPUS=n overrides with 0..n-1 (fake devices in tests). A malformed variable
or a command that cannot be run stops the launcher with a message naming it (exit status 2, or 127 for a command
not found, as a shell).
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

DEVICE_ID = re.compile(r"-?\d+|(?:GPU|MIG)-[0-9A-Za-z-]+")  # an index, or a GPU / MIG UUID (nvidia-smi -L)


def devices() -> list[str]:
    """The device ids to lease (module docstring); ValueError naming the variable when it is malformed."""
    if "EDAD_GPUS" in os.environ:
        value = os.environ["EDAD_GPUS"]
        if not value.strip().isdigit():
            raise ValueError(f"EDAD_GPUS={value!r}: expected a number of devices (0, 1, 2, ...)")
        return [str(i) for i in range(int(value))]
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        value = os.environ["CUDA_VISIBLE_DEVICES"]
        ids = [d.strip() for d in value.split(",") if d.strip()]
        if bad := [d for d in ids if not DEVICE_ID.fullmatch(d)]:
            raise ValueError(f"CUDA_VISIBLE_DEVICES={value!r}: {bad[0]!r} is not a device index or a GPU-/MIG- UUID")
        negative = [i for i, d in enumerate(ids) if d.startswith("-")]
        return ids[: negative[0]] if negative else ids  # CUDA sees no device from a negative id on
    import torch  # only when needed: the launcher should start fast

    return [str(i) for i in range(torch.cuda.device_count())]


def claim(locks: Path, ids: list[str], poll_seconds: float = 1.0) -> tuple[str, int]:
    """(device id, open lock fd) of a free device, waiting while all are busy."""
    locks = locks / socket.gethostname()
    locks.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for device in ids:
            fd = os.open(locks / f"gpu{device}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return device, fd
        if not waited:
            log.info("all %d GPUs (%s) are claimed by other jobs (%s); waiting", len(ids), ",".join(ids), locks)
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
    try:
        ids = devices()
    except ValueError as err:
        p.error(str(err))
    if not ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    else:
        device, fd = claim(args.locks, ids)
        os.set_inheritable(fd, True)  # the lock stays with the command's process
        os.environ["CUDA_VISIBLE_DEVICES"] = device
        log.info("claimed GPU %s", device)
    try:
        os.execvp(command[0], command)
    except OSError as err:  # not found, not executable: the message a shell would give, not a traceback
        print(f"{p.prog}: cannot run {command[0]!r}: {err.strerror}", file=sys.stderr)
        sys.exit(127 if isinstance(err, FileNotFoundError) else 126)


if __name__ == "__main__":
    main()
