"""edad_core.files: atomic writes leave the old output or the new one, never a part; permissions follow the
umask; checksums equal hashlib's; the corpus reader names a bad line."""

import hashlib
import os
import signal
import stat
import sys

import pytest

from edad_core.files import atomic_dir, atomic_files, atomic_write_json, atomic_write_text, corpus_lines, sha256_file


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_files(target, tmp_path / "second.txt") as (tmp, second):
            tmp.write_text("half")
            second.write_text("new")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_files_written_together_appear_together(tmp_path):
    with atomic_files(tmp_path / "a", tmp_path / "sub" / "b") as (a, b):
        a.write_text("1")
        b.write_text("2")
        assert not (tmp_path / "a").exists()
    assert (tmp_path / "a").read_text() == "1" and (tmp_path / "sub" / "b").read_text() == "2"


def test_a_failed_folder_write_leaves_nothing_and_a_good_one_replaces_the_old(tmp_path):
    out = tmp_path / "vocab"
    out.mkdir()  # as Snakemake pre-creates a declared output folder
    (out / "stale.txt").write_text("x")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(out) as tmp:
            (tmp / "vocab.txt").write_text("a\n")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab"] and (out / "stale.txt").exists()
    with atomic_dir(out) as tmp:
        (tmp / "vocab.txt").write_text("a\n")
    assert sorted(p.name for p in out.iterdir()) == ["vocab.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab"]


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"k": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert (tmp_path / "a.json").read_text() == '{\n "k": 1\n}\n'


def test_sha256_of_a_multi_chunk_file_equals_hashlib(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def test_corpus_lines_numbers_lines_hashes_bytes_and_names_a_bad_one(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"first\r\nsecond\n\nthird")
    hasher = hashlib.sha256()
    assert list(corpus_lines(path, hasher)) == [(1, "first"), (2, "second"), (3, ""), (4, "third")]
    assert hasher.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(b"ok\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"corpus\.txt:2: not valid UTF-8"):
        list(corpus_lines(path))


# ----------------------------------------------------------------------------- crashes

MUTATIONS = ("os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "ctypes.call_function")  # audit events


def _killed_at(kill_at: int, write) -> bool:
    """Run `write()` in a forked process that is SIGKILLed just before its kill_at-th change to the file system
    (a rename, a removal, a write-open, a libc call); False when it finished first."""
    pid = os.fork()
    if pid == 0:
        seen = 0

        def crash(event, args):
            nonlocal seen
            if event in MUTATIONS or (event == "open" and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                seen += 1
                if seen == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

        try:
            sys.addaudithook(crash)  # the child's only: it ends with os._exit
            write("new")
        finally:
            os._exit(0)
    status = os.waitpid(pid, 0)[1]
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _crash_at_every_step(tmp_path, write, state) -> int:
    """Write the new output once per file-system change, killed just before that change, until it completes;
    after each crash `state()` must see the old output or the new one, never a mix, and the next write (of the
    old output again) must leave nothing else beside it. Returns the number of crashes."""
    write("old")
    for kill_at in range(1, 100):
        if not _killed_at(kill_at, write):
            assert state() == "new"
            return kill_at - 1
        assert state() in ("old", "new", "refused"), f"killed before change {kill_at}: {state()}"
        write("old")
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], f"after crash {kill_at}"
    raise AssertionError("the write never completed")


def test_a_set_of_files_killed_at_any_step_is_old_new_or_refused_and_its_leftovers_go(tmp_path):
    txt, stats = tmp_path / "corpus.txt", tmp_path / "stats.json"

    def state():
        try:
            texts = ["".join(line for _, line in corpus_lines(txt)), stats.read_text().strip()]
        except ValueError as e:  # a reader told that the set is not whole
            assert "its write was cut short" in str(e) and str(stats) in str(e)
            return "refused"
        return texts[0] if texts[0] == texts[1] else f"mixed {texts}"

    def write(text):
        with atomic_files(txt, stats) as (a, b):
            a.write_text(text + "\n")
            b.write_text(text + "\n")

    assert _crash_at_every_step(tmp_path, write, state) >= 6


def test_a_folder_killed_at_any_step_is_old_or_new_never_missing_and_its_leftovers_go(tmp_path):
    out = tmp_path / "vocab"

    def state():
        if not out.is_dir():
            return "missing"
        texts = {p.name: p.read_text().strip() for p in out.iterdir()}
        return texts["vocab.txt"] if texts == dict.fromkeys(["vocab.txt", "stats.json"], texts["vocab.txt"]) else f"mixed {texts}"

    def write(text):
        with atomic_dir(out) as tmp:
            (tmp / "vocab.txt").write_text(text + "\n")
            (tmp / "stats.json").write_text(text + "\n")

    assert _crash_at_every_step(tmp_path, write, state) >= 3


def test_a_live_writers_temp_is_not_swept(tmp_path):
    with atomic_files(tmp_path / "a") as (tmp,):
        tmp.write_text("being written")
        atomic_write_text(tmp_path / "a", "another writer of the same file")  # sweeps only what nobody holds
        assert tmp.read_text() == "being written"
    assert (tmp_path / "a").read_text() == "being written"
