import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import needs_full_mirror
from edad_core.download import DownloadError
from edad_core.files import sha256_file
from edad_core.ner_data import (
    NerFormatError,
    benchmark_files,
    label_names,
    prepare_ner_dataset,
    read_iob,
    write_iob,
)

PROJECT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((PROJECT / "config.yaml").read_text())["ner"]
SPLITS = ["train", "devel", "test"]
# mirror/README.md: sentences and tokens per split
README_COUNTS = {
    "BC5CDR-IOB": [(4560, 118170), (4581, 117453), (4797, 124750)],
    "BioNLP09-IOB": [(7462, 227742), (1448, 44185), (2446, 74624)],
    "NCBI-disease-IOB": [(5424, 135701), (923, 23969), (940, 24497)],
}
README_LABELS = {
    "BC5CDR-IOB": ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"],
    "BioNLP09-IOB": ["O", "B-Protein", "I-Protein"],
    "NCBI-disease-IOB": ["O", "B-Disease", "I-Disease"],
}
BASE = "https://example.org/ner"
GOOD = "a\tB-X\nb\tI-X\n\nc\tO\n"

BAD = [  # (content, line of the error, message part)
    ("a\tO\nb\tO\textra\n", 2, "expected 2 columns .TOKEN ... TAG., got 3"),
    ("a\tO\nlonely\n", 2, "got 1"),
    ("a\tO\nAspirin \tB-Chemical\n", 2, "leading or trailing whitespace .'Aspirin '"),
    ("a\tO\n\n\tO\n", 3, "empty token"),
    ("a\tO\n \tB-X\n", 2, "empty token"),
    ("a\tB_X\n", 1, "unknown tag 'B_X'"),
    ("a\tB-\n", 1, "unknown tag"),
    ("a\tE-X\n", 1, "unknown tag"),
    ("a\to\n", 1, "unknown tag"),
    ("a\tO\nb\tI-X\n", 2, "I-X follows O"),
    ("a\tB-X\nb\tI-Y\n", 2, "I-Y follows B-X"),
    ("a\tO\n\nb\tI-X\n", 3, "I-X follows sentence start"),
    ("", 1, "no sentences"),
    ("-DOCSTART-\tO\n\n\n", 3, r"no sentences \(only 1 -DOCSTART- line\(s\)\)"),
    ("a\tO\nb\ufeff\tO\n", 2, "a byte-order mark .U.FEFF. inside the token"),
]


def local_mirror(root: Path, dataset: str, contents: dict) -> Path:
    for split, text in contents.items():
        path = root / "example.org" / "ner" / dataset / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize("content,line,message", BAD)
def test_bad_input_names_file_and_line_and_writes_nothing(tmp_path, content, line, message):
    bad = tmp_path / "bad.tsv"
    bad.write_text(content)
    with pytest.raises(NerFormatError, match=rf"^{bad}:{line}: .*{message}"):
        read_iob(bad)
    # the stage: the bad split is the last one, so the good splits were already read when it fails
    mirror = local_mirror(tmp_path / "m", "DS", {"train": GOOD, "devel": GOOD, "test": content})
    out = tmp_path / "out"
    with pytest.raises(NerFormatError, match=rf"{tmp_path / 'dl' / 'test.tsv'}:{line}:"):
        prepare_ner_dataset(
            "DS", files=benchmark_files(BASE, "DS", SPLITS), out_dir=out, download_dir=tmp_path / "dl", mirror=mirror,
            progress=False,
        )
    assert not out.exists()


def test_read_iob_format_details(tmp_path):
    path = tmp_path / "x.tsv"
    # -DOCSTART- skipped, several blank lines, CRLF, no final blank line, tokens may hold spaces
    path.write_bytes(b"-DOCSTART-\tO\n\na\tB-X\r\nb c\tI-X\n\n\n\nd\tO\ne\tB-Y")
    assert read_iob(path) == [(["a", "b c"], ["B-X", "I-X"]), (["d", "e"], ["O", "B-Y"])]


def test_repair_mode(tmp_path, caplog):
    path = tmp_path / "r.tsv"
    path.write_text("a\tO\nb\tI-X\nc\tI-X\nd\tI-Y\n\ne\tI-Z\nf\tB-Z\n")
    with caplog.at_level(logging.WARNING, logger="edad_core.ner_data"):
        got = read_iob(path, repair=True)
    assert got == [(["a", "b", "c", "d"], ["O", "B-X", "I-X", "B-Y"]), (["e", "f"], ["B-Z", "B-Z"])]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 3 and [f"{path}:{n}:" in w for n, w in zip((2, 4, 6), warned)] == [True] * 3
    # other errors are not repaired
    path.write_text("a\tO\nb\tX\n")
    with pytest.raises(NerFormatError, match=f"{path}:2:"):
        read_iob(path, repair=True)


def test_labels_are_shared_across_splits_and_max_sentences_keeps_the_first(tmp_path):
    (tmp_path / "train.tsv").write_text("a\tB-Zeta\nb\tI-Zeta\n\nc\tO\n\nd\tO\n")
    (tmp_path / "test.tsv").write_text("e\tB-Alpha\n")
    files = {"train": str(tmp_path / "train.tsv"), "test": str(tmp_path / "test.tsv")}

    def prepare(out, max_sentences=None):
        return prepare_ner_dataset("DS", files=files, out_dir=tmp_path / out, download_dir=tmp_path / f"dl-{out}",
                                   max_sentences=max_sentences, progress=False)

    summary = prepare("all")
    assert summary["label_names"] == ["O", "B-Alpha", "I-Alpha", "B-Zeta", "I-Zeta"]
    assert json.loads((tmp_path / "all" / "labels.json").read_text())["label_names"] == summary["label_names"]
    first_two = [(["a", "b"], ["B-Zeta", "I-Zeta"]), (["c"], ["O"])]
    assert read_iob(tmp_path / "all" / "train.tsv") == [*first_two, (["d"], ["O"])]
    prepare("two", max_sentences=2)
    assert read_iob(tmp_path / "two" / "train.tsv") == first_two
    with pytest.raises(ValueError, match="ner.max_sentences"):
        prepare("none", max_sentences=0)
    assert label_names([["O"], ["B-b", "I-b"], ["B-a"]]) == ["O", "B-a", "I-a", "B-b", "I-b"]


def test_write_iob_roundtrip_atomic(tmp_path):
    sents = [(["a", "b"], ["B-X", "I-X"]), (["c"], ["O"])]
    path = tmp_path / "sub" / "o.tsv"
    write_iob(sents, path)
    assert path.read_text() == "a\tB-X\nb\tI-X\n\nc\tO\n\n"
    assert read_iob(path) == sents and [p.name for p in path.parent.iterdir()] == ["o.tsv"]


@needs_full_mirror
@pytest.mark.parametrize("dataset", list(README_COUNTS))
def test_real_mirror_datasets(mirror, tmp_path, dataset):
    tags = []
    for split, (n_sents, n_tokens) in zip(SPLITS, README_COUNTS[dataset]):
        path = mirror / CONFIG["base_url"].removeprefix("https://") / dataset / f"{split}.tsv"
        assert sha256_file(path) == CONFIG["sha256"][f"{dataset}/{split}.tsv"]  # config pins the mirror files
        sents = read_iob(path)
        assert (len(sents), sum(len(t) for t, _ in sents)) == (n_sents, n_tokens)
        write_iob(sents, tmp_path / f"{split}.tsv")  # the writer reproduces the published files byte for byte
        assert (tmp_path / f"{split}.tsv").read_bytes() == path.read_bytes()
        tags.extend(t for _, t in sents)
    assert label_names(tags) == README_LABELS[dataset]


def test_stage_rejects_wrong_sha256(tmp_path):
    mirror = local_mirror(tmp_path / "m", "DS", {s: GOOD for s in SPLITS})
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        prepare_ner_dataset(
            "DS", files=benchmark_files(BASE, "DS", SPLITS), out_dir=tmp_path / "out", download_dir=tmp_path / "dl",
            sha256={"devel": "0" * 64}, mirror=mirror, progress=False,
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_script_end_to_end_on_mirror(mirror, tmp_path):
    dataset, out = "BC5CDR-IOB", tmp_path / "results" / "ner" / "BC5CDR-IOB"
    sources = {s: mirror / CONFIG["base_url"].removeprefix("https://") / dataset / f"{s}.tsv" for s in SPLITS}
    spec = {"files": benchmark_files(CONFIG["base_url"], dataset, SPLITS), "token_column": 0, "tag_column": -1,
            "sha256": {s: sha256_file(sources[s]) for s in SPLITS}}  # the full mirror's are config's pins
    cmd = [sys.executable, str(PROJECT / "workflow_scripts" / "ner_data.py"), "--dataset", dataset,
           "--spec", json.dumps(spec), "--mirror", str(mirror), "--repair", "false",
           "--max-sentences", "50", "--download-dir", str(tmp_path / "dl"), "--out-dir", str(out)]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT), "HOME": str(tmp_path)}  # no EDAD_MIRROR, no network
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["devel.tsv", "labels.json", "test.tsv", "train.tsv"]
    summary = json.loads((out / "labels.json").read_text())
    assert summary["label_names"] == README_LABELS[dataset]
    for split in SPLITS:
        source = sources[split].read_text()
        n_sents = len(read_iob(sources[split]))
        head = "\n\n".join(source.split("\n\n")[:50]) + "\n\n"  # the first 50 sentences, independently
        written = (out / f"{split}.tsv").read_text()
        assert written == head
        lines = [line for line in written.splitlines() if line]
        stats = summary["splits"][split]
        assert stats["sentences"] == 50 and stats["source_sentences"] == n_sents and stats["tokens"] == len(lines)
        assert stats["entities"] == {
            t: sum(line.endswith(f"\tB-{t}") for line in lines) for t in ("Chemical", "Disease")
        }
        assert stats["entities"]["Chemical"] > 0 and stats["entities"]["Disease"] > 0


def test_reader_strips_a_bom_names_undecodable_bytes_and_reads_conll2003_columns(tmp_path):
    bom = tmp_path / "bom.tsv"
    bom.write_bytes("\ufeff-DOCSTART-\tO\n\nAspirin\tB-Chemical\n".encode())
    assert read_iob(bom) == [(["Aspirin"], ["B-Chemical"])]  # the BOM does not turn -DOCSTART- into a sentence
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes(b"a\tO\n\ncaf\xe9\tO\n")
    with pytest.raises(NerFormatError, match=r"latin1\.tsv:3: not UTF-8"):
        read_iob(bad)
    conll = tmp_path / "conll.txt"  # CoNLL-2003: token, POS, chunk, NE tag, space-separated
    conll.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n")
    assert read_iob(conll) == [(["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"])]
    assert read_iob(conll, tag_column=2) == [(["EU", "rejects", "German"], ["B-NP", "B-VP", "B-NP"])]


def test_a_users_dataset_by_paths_in_four_column_conll(tmp_path):
    rows = "-DOCSTART- -X- -X- O\n\nAspirin NN B-NP B-Chem\ncures VBZ B-VP O\npain NN B-NP B-Dis\n\n"
    files = {}
    for split in SPLITS:
        files[split] = str(tmp_path / f"{split}.conll")
        Path(files[split]).write_text(rows)
    summary = prepare_ner_dataset("Mine", files=files, out_dir=tmp_path / "out", download_dir=tmp_path / "dl",
                                  progress=False)
    assert summary["label_names"] == ["O", "B-Chem", "I-Chem", "B-Dis", "I-Dis"]
    assert (tmp_path / "out" / "train.tsv").read_text() == "Aspirin\tB-Chem\ncures\tO\npain\tB-Dis\n\n"


# ----------------------------------------------------------------------------- files as they come


def test_old_mac_line_endings_read_like_unix_ones(tmp_path):
    unix = "-DOCSTART-\tO\n\nAspirin\tB-Chemical\ncures\tO\n\npain\tB-Disease\n"
    mac = tmp_path / "mac.tsv"
    mac.write_bytes(unix.replace("\n", "\r").encode())  # as classic Mac OS (and some exporters) write it
    assert read_iob(mac) == [(["Aspirin", "cures"], ["B-Chemical", "O"]), (["pain"], ["B-Disease"])]
    mac.write_bytes(b"a\tO\rb\tI-X\r")
    with pytest.raises(NerFormatError, match=r"mac\.tsv:2: I-X follows O"):  # line numbers count CR lines
        read_iob(mac)


def test_two_files_joined_with_their_byte_order_marks(tmp_path, caplog):
    first, second = tmp_path / "a.tsv", tmp_path / "b.tsv"
    first.write_text("-DOCSTART-\tO\n\nAspirin\tB-Chemical\n\n", encoding="utf-8-sig")  # a BOM each, as Excel
    second.write_text("-DOCSTART-\tO\n\nIbuprofen\tB-Chemical\n", encoding="utf-8-sig")  # and Notepad write
    joined = tmp_path / "joined.tsv"
    joined.write_bytes(first.read_bytes() + second.read_bytes())  # cat a.tsv b.tsv > joined.tsv
    with caplog.at_level(logging.WARNING, logger="edad_core.ner_data"):
        assert read_iob(joined) == [(["Aspirin"], ["B-Chemical"]), (["Ibuprofen"], ["B-Chemical"])]
    assert f"{joined}:5: a byte-order mark" in caplog.text
    joined.write_bytes(first.read_bytes().removesuffix(b"\n") + "\ufeffIbuprofen\tI-Chemical\n".encode())
    assert read_iob(joined) == [(["Aspirin", "Ibuprofen"], ["B-Chemical", "I-Chemical"])]  # not in the token


@pytest.mark.parametrize("name", ["..", ".", "a/b", ".hidden", "-rf", "two words", "x" * 101, "", 7])
def test_a_dataset_name_that_is_not_one_safe_folder_is_refused(tmp_path, name):
    files = {split: str(tmp_path / f"{split}.tsv") for split in SPLITS}
    for path in files.values():
        Path(path).write_text(GOOD)
    out = tmp_path / "results" / "ner" / str(name)
    with pytest.raises(ValueError, match=r"ner\.datasets: .* is not a safe name for a folder"):
        prepare_ner_dataset(name, files=files, out_dir=out, download_dir=tmp_path / "dl", progress=False)
    assert not (tmp_path / "results").exists()


def test_the_splits_and_labels_of_a_dataset_appear_together(tmp_path, monkeypatch):
    files = {split: str(tmp_path / f"{split}.tsv") for split in SPLITS}
    for path in files.values():
        Path(path).write_text(GOOD)
    out = tmp_path / "out"
    prepare_ner_dataset("DS", files=files, out_dir=out, download_dir=tmp_path / "dl", progress=False)
    Path(files["train"]).write_text("z\tB-Z\n")
    real_replace, renamed = os.replace, []

    def crash_after_the_first_rename(src, dst):  # the machine stops between two renames of the output
        if Path(dst).parent == out:
            if renamed:
                raise KeyboardInterrupt
            renamed.append(Path(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_after_the_first_rename)
    with pytest.raises(KeyboardInterrupt):
        prepare_ner_dataset("DS", files=files, out_dir=out, download_dir=tmp_path / "dl2", progress=False)
    monkeypatch.undo()
    assert renamed == [out / "train.tsv"]  # the new train split beside the old labels: a reader must refuse it
    with pytest.raises(ValueError, match=r"train\.tsv: its write was cut short .*labels\.json"):
        read_iob(out / "train.tsv")
