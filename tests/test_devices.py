"""The GPU lease (edad_core.devices) with fake devices: concurrent jobs never share a device, a killed
holder's device becomes free, and without GPUs the command runs on the CPU."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edad_core import devices

HOLD = "import os, sys, time; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep(float(sys.argv[1]))"


def job(locks: Path, seconds: float, gpus: int = 2, allocated: str | None = None) -> subprocess.Popen:
    """A job on `gpus` fake devices, or (allocated) on the ids a scheduler put in CUDA_VISIBLE_DEVICES."""
    env = {k: v for k, v in os.environ.items() if k not in ("EDAD_GPUS", "CUDA_VISIBLE_DEVICES")}
    env.update({"CUDA_VISIBLE_DEVICES": allocated} if allocated is not None else {"EDAD_GPUS": str(gpus)})
    return subprocess.Popen([sys.executable, "-m", "edad_core.devices", "--locks", str(locks), "--",
                             sys.executable, "-c", HOLD, str(seconds)], env=env, stdout=subprocess.PIPE, text=True)


def test_concurrent_jobs_never_share_a_device_and_a_killed_holders_device_is_freed(tmp_path):
    a, b = job(tmp_path, 30), job(tmp_path, 30)
    held = {a.stdout.readline().strip(), b.stdout.readline().strip()}
    assert held == {"0", "1"}
    c = job(tmp_path, 0)  # both devices busy: waits
    time.sleep(2)
    assert c.poll() is None
    a.send_signal(signal.SIGKILL)  # the kernel releases a killed holder's lock
    a.wait()
    freed = c.stdout.readline().strip()
    assert c.wait(timeout=30) == 0 and freed in held
    assert sorted(p.name for p in (tmp_path / socket.gethostname()).iterdir()) == ["gpu0.lock", "gpu1.lock"]
    b.kill()
    b.wait()


def test_without_gpus_the_command_runs_on_the_cpu(tmp_path):
    out = subprocess.run([sys.executable, "-m", "edad_core.devices", "--locks", str(tmp_path), "--",
                          sys.executable, "-c", "import os; print(repr(os.environ['CUDA_VISIBLE_DEVICES']))"],
                         env={**os.environ, "EDAD_GPUS": "0"}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "''"


def test_a_schedulers_allocation_is_leased_by_its_own_ids(tmp_path):
    a, b = job(tmp_path, 30, allocated="2,5"), job(tmp_path, 30, allocated="2,5")
    try:
        assert {a.stdout.readline().strip(), b.stdout.readline().strip()} == {"2", "5"}
    finally:
        for j in (a, b):
            j.kill()
            j.wait()
    c = job(tmp_path, 0, allocated="")  # an allocation of no GPU: the CPU
    assert c.stdout.readline().strip() == "" and c.wait(timeout=60) == 0


def launch(monkeypatch, capsys, tmp_path, command: list[str], **env) -> tuple[int, str]:
    """(exit status, stderr) of the launcher run in this process with `env`, for a run that stops before exec."""
    for name in ("EDAD_GPUS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        devices.main(["--locks", str(tmp_path), "--", *command])
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize("env, message", [
    ({"EDAD_GPUS": "two"}, "EDAD_GPUS='two': expected a number of devices"),
    ({"EDAD_GPUS": "-1"}, "EDAD_GPUS='-1': expected a number of devices"),
    ({"CUDA_VISIBLE_DEVICES": "0,gpu1"}, "CUDA_VISIBLE_DEVICES='0,gpu1': 'gpu1' is not a device index"),
    ({"CUDA_VISIBLE_DEVICES": "../../etc"}, "'../../etc' is not a device index or a GPU-/MIG- UUID"),
])
def test_a_malformed_device_variable_is_named(monkeypatch, capsys, tmp_path, env, message):
    status, err = launch(monkeypatch, capsys, tmp_path, [str(tmp_path / "never-run")], **env)  # no exec, ever
    assert status == 2 and message in err
    assert not list(tmp_path.iterdir())  # nothing leased


def test_uuids_and_cudas_negative_id_are_understood(monkeypatch):
    uuid = "GPU-8932f937-d72c-4106-c12f-20bd9faed9f6"
    for value, expected in ((uuid, [uuid]), ("-1", []), ("3,-1,4", ["3"]), ("2, 5", ["2", "5"])):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        assert devices.devices() == expected, value  # -1: the usual "no GPU"; CUDA stops at a negative id


def test_a_command_that_cannot_be_run_is_named(monkeypatch, capsys, tmp_path):
    status, err = launch(monkeypatch, capsys, tmp_path, ["no-such-command-edad", "--flag"], EDAD_GPUS="0")
    assert status == 127 and "cannot run 'no-such-command-edad': No such file or directory" in err
    (tmp_path / "script.sh").write_text("#!/bin/sh\necho hi\n")  # not executable
    status, err = launch(monkeypatch, capsys, tmp_path, [str(tmp_path / "script.sh")], EDAD_GPUS="0")
    assert status == 126 and "script.sh': Permission denied" in err
