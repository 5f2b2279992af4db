"""File helpers every stage shares: writes that never leave a half-written output, checksums, and the corpus
line reader.

    atomic_write_text(path, text)          # also atomic_write_bytes / atomic_write_json
    with atomic_files(a, b) as (ta, tb):   # several files appear together, or none does
        ...write ta, tb...
    with atomic_dir(folder) as tmp:        # a whole output folder appears at once
        ...write files into tmp...
    check_complete(path)                   # raises if `path` is one of a set whose write a crash cut short
    sha256_file(path); for lineno, text in corpus_lines(path): ...   # corpus_lines checks completeness

Every write goes to a hidden temp name beside its target (``.<name>.tmp-<random>``), is flushed and fsynced (the
file, then its folder), and only then renamed over the target, so a crash at any instant leaves either the old
output or the new one. Files get the user's usual permissions (umask), not the 0600 of mkstemp.

Several outputs, all or nothing: a folder (`atomic_dir`) is swapped with the old one in one rename (Linux
``renameat2(RENAME_EXCHANGE)``; where the file system lacks it, two renames, and a crash between them leaves no
folder: nothing, never a mix). Files (`atomic_files`) cannot be renamed together, so before the first rename each
target gets a marker ``.<name>.pending``, removed only after the last: a crash between the renames leaves the
markers, and `check_complete` (every reader of such a set calls it; `corpus_lines` does) refuses the files until
a run finishes the write.

Crashed writers' leftovers: each writer holds an flock on its temp file or folder while it works, and the next
write of the same output removes every temp of that output that no live writer holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import glob
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)

RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


def _temp_name(path: Path) -> Path:
    # a random suffix: two writers of one target never share a temp file
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")


def _pending(path: Path) -> Path:
    return path.with_name(f".{path.name}.pending")


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


def hold(path: Path, *, create: bool = False, folder: bool = False) -> int | None:
    """An open fd of `path` with an exclusive flock on it (waiting for it), or None when `path` is gone or was
    replaced while waiting (its holder removed it). `create`: make the file first if it is missing (the lock
    files of edad_core.download), `folder`: make it as a new folder. The holder removes `path` while it still
    holds the lock, so whoever gets a lock on a removed path sees that here and tries again."""
    if folder:
        path.mkdir()
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_CREAT if create else 0), 0o666)
    except FileNotFoundError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except FileNotFoundError:
        pass
    os.close(fd)
    return None


def _claim_temp(path: Path, *, folder: bool) -> tuple[Path, int]:
    """A new temp name beside `path` (a file or a folder), created and held (see `sweep`)."""
    while True:
        tmp = _temp_name(path)
        if not folder:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        if (fd := hold(tmp, folder=folder)) is not None:
            return tmp, fd


def sweep(path) -> None:
    """Remove the temp files and folders beside `path` that writers of it left when they crashed: those no live
    writer holds an flock on."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        try:
            fd = os.open(stale, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone meanwhile, or a link: not ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live writer's
        try:
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
            log.warning("removed %s, left by a write of %s that did not finish", stale, path)
        except OSError as err:  # a leftover must not stop the write
            log.warning("cannot remove %s, left by a write of %s that did not finish: %s", stale, path, err)
        finally:
            os.close(fd)


def check_complete(path) -> None:
    """Raise ValueError when `path` belongs to a set of files whose write (`atomic_files`) a crash cut short:
    it may be new while the files written with it are old, or the other way round."""
    marker = _pending(Path(path))
    if marker.exists():
        others = ""
        with contextlib.suppress(OSError, ValueError, TypeError):
            others = ", ".join(p for p in json.loads(marker.read_text()) if p != str(path))
        raise ValueError(f"{path}: its write was cut short (a crash between the renames of it and "
                         f"{others or 'the files written with it'}), so it may not match them; run the step that "
                         f"makes it again (marker {marker})")


@contextlib.contextmanager
def atomic_files(*paths) -> Iterator[list[Path]]:
    """Temp paths beside `paths`; when the block succeeds they are fsynced and renamed over `paths` (several:
    behind `.pending` markers, see the module docstring), when it raises they are removed. Leftover temps of
    `paths` from crashed writes are removed first."""
    paths = [Path(p) for p in paths]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        sweep(p)
    claimed = [_claim_temp(p, folder=False) for p in paths]
    temps = [t for t, _ in claimed]
    try:
        yield temps
        for t in temps:
            with open(t, "rb") as f:
                os.fsync(f.fileno())
        folders = {p.parent for p in paths}
        markers = [_pending(p) for p in paths] if len(paths) > 1 else []
        for m in markers:  # every marker before the first rename
            with open(m, "w") as f:
                json.dump([str(p) for p in paths], f)
                f.flush()
                os.fsync(f.fileno())
        for folder in folders if markers else ():
            fsync_dir(folder)
        for t, p in zip(temps, paths):
            os.replace(t, p)
        for folder in folders:
            fsync_dir(folder)
        for m in markers:  # every marker after the last rename
            m.unlink()
        for folder in folders if markers else ():
            fsync_dir(folder)
    finally:
        for t, fd in claimed:
            t.unlink(missing_ok=True)
            os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_files(path) as (tmp,):
        tmp.write_bytes(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, *, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic rename (Linux renameat2 RENAME_EXCHANGE); False where that is unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


@contextlib.contextmanager
def atomic_dir(out_dir) -> Iterator[Path]:
    """A new temp folder beside `out_dir`; on success it is fsynced and takes the place of `out_dir` in one
    rename (an existing one, e.g. the empty folder Snakemake creates for declared outputs, is then removed), on
    error it is deleted. Leftover temp folders of `out_dir` from crashed writes are removed first."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep(out)
    tmp, fd = _claim_temp(out, folder=True)
    try:
        try:
            yield tmp
            fsync_tree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists() and not out.is_symlink() and _exchange(tmp, out):
            fsync_dir(out.parent)
            shutil.rmtree(tmp, ignore_errors=True)  # the old folder, now under the temp name
            return
        if out.exists():
            old = _temp_name(out)  # no exchange here: a crash before the next rename leaves no folder, not a mix
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
        fsync_dir(out.parent)
    finally:
        os.close(fd)


def sha256_file(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def corpus_lines(path, hasher=None) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) of a complete (`check_complete`) UTF-8 file, with a byte progress bar; `hasher` (a hashlib
    object) is fed the raw bytes so callers can checksum the file in the same pass."""
    path = Path(path)
    check_complete(path)
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
