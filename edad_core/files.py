"""File helpers every stage shares: writes that never leave a half-written output, checksums, and the corpus
line reader.

    atomic_write_text(path, text)          # also atomic_write_bytes / atomic_write_json
    with atomic_files(a, b) as (ta, tb):   # several files appear together, or none does
        ...write ta, tb...
    with atomic_dir(folder) as tmp:        # a whole output folder appears at once
        ...write files into tmp...
    sha256_file(path); for lineno, text in corpus_lines(path): ...

Every write goes to a hidden temp name beside its target, is flushed and fsynced (the file, then its folder),
and only then renamed over the target, so a crash at any instant leaves either the old output or the new one.
Files get the user's usual permissions (umask), not the 0600 of mkstemp.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm


def _temp_name(path: Path) -> Path:
    # a random suffix: two writers of one target never share a temp file
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")


def fsync_dir(folder: Path) -> None:
    """Make a rename (or a new entry) in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file below `folder`, then every folder (bottom up)."""
    for root, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            with open(Path(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))


def _commit(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_files(*paths) -> Iterator[list[Path]]:
    """Temp paths beside `paths`; when the block succeeds they are fsynced and renamed over `paths`, when it
    raises they are removed."""
    paths = [Path(p) for p in paths]
    temps = [_temp_name(p) for p in paths]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temps
        for t in temps:
            with open(t, "rb") as f:
                os.fsync(f.fileno())
        for t, p in zip(temps, paths):
            _commit(t, p)
    finally:
        for t in temps:
            t.unlink(missing_ok=True)


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_files(path) as (tmp,):
        tmp.write_bytes(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, *, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


@contextlib.contextmanager
def atomic_dir(out_dir) -> Iterator[Path]:
    """A new temp folder beside `out_dir`; on success it is fsynced and replaces `out_dir` (an existing one, e.g.
    the empty folder Snakemake creates for declared outputs, is removed), on error it is deleted."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(out)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
    if out.exists():
        os.replace(out, old)
    _commit(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def corpus_lines(path, hasher=None) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) of a UTF-8 file, with a byte progress bar; `hasher` (a hashlib
    object) is fed the raw bytes so callers can checksum the file in the same pass."""
    path = Path(path)
    with open(path, "rb") as f, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name, mininterval=5
    ) as bar:
        done = 0
        for lineno, raw in enumerate(f, 1):
            if hasher is not None:
                hasher.update(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if lineno % 8192 == 0:
                bar.update(f.tell() - done)
                done = f.tell()
            yield lineno, text.rstrip("\r\n")
        bar.update(bar.total - done)
