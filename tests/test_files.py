"""edad_core.files: atomic writes leave the old output or the new one, never a part; permissions follow the
umask; checksums equal hashlib's; the corpus reader names a bad line."""

import hashlib
import os
import stat

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
