"""edad_core.corpus: sentence splitting, the urls (offline mirror) and local sources, the N-token subset,
manifest/stats, and bad input. The pmc source has its own tests (tests/test_pmc.py)."""

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import MIRROR
from edad_core.corpus import build_corpus, iter_documents, normalize, split_sentences
from edad_core.download import mirror_path

DEMO_URLS = Path(__file__).parents[1] / "config" / "demo_corpus_urls.txt"


# ----------------------------------------------------------------------------- helpers


def _read_corpus(path: Path) -> list[list[str]]:
    """Documents (lists of sentence lines) of a corpus file, parsed independently of the writer."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and not text.endswith("\n\n") and "\n\n\n" not in text
    return [doc.split("\n") for doc in text[:-1].split("\n\n")]


def _check_outputs(out: Path) -> dict:
    """Stats and manifest agree with the corpus file; returns the stats."""
    stats = json.loads((out / "stats.json").read_text())
    docs = _read_corpus(out / "corpus.txt")
    assert stats["documents"] == len(docs)
    assert stats["sentences"] == sum(len(d) for d in docs)
    assert stats["tokens"] == sum(len(s.split()) for d in docs for s in d)
    assert all(s and s == " ".join(s.split()) for d in docs for s in d)
    assert stats["sha256"] == hashlib.sha256((out / "corpus.txt").read_bytes()).hexdigest()
    rows = (out / "manifest.tsv").read_text().splitlines()
    assert rows[0] == "kind\tdoc_id\tlocation\tsha256\tlicense\tis_manuscript" and len(rows) == 1 + len(docs)
    return stats


def _build(sources, out: Path, cache: Path, n_tokens=None, mirror=None) -> dict:
    build_corpus(
        sources, out / "corpus.txt", out / "stats.json", out / "manifest.tsv", n_tokens=n_tokens, mirror=mirror, cache_dir=cache
    )
    return _check_outputs(out)


def _manifest(out: Path) -> list[list[str]]:
    return [row.split("\t") for row in (out / "manifest.tsv").read_text().splitlines()[1:]]


def _demo_lines(n_craft: int, n_plos: int) -> list[str]:
    """The first CRAFT and PLOS lines of the demo's URL list whose files the tests' mirror holds."""
    lines = [line for line in DEMO_URLS.read_text().splitlines() if line and not line.startswith("#")]
    lines = [line for line in lines if mirror_path(line.split()[0], MIRROR).is_file()]
    craft = [line for line in lines if "/CRAFT/" in line][:n_craft]
    plos = [line for line in lines if "/PLOS/" in line][:n_plos]
    return plos + craft


# ----------------------------------------------------------------------------- sentences


@pytest.mark.parametrize(
    "text, sentences",
    [
        (
            "Smith et al. showed that E. coli grows. S. cerevisiae does not.",
            ["Smith et al. showed that E. coli grows.", "S. cerevisiae does not."],
        ),
        (
            "The effect was significant (p < 0.05). However, approx. 5 mg was used, i.e. 10% of the dose, vs. 2 mg "
            "in Fig. 3. Results were clear!",
            [
                "The effect was significant (p < 0.05).",
                "However, approx. 5 mg was used, i.e. 10% of the dose, vs. 2 mg in Fig. 3.",
                "Results were clear!",
            ],
        ),
        ("We used e.g. Western blots. Dr. Smith agreed. Values were 0.05 and 1.5.", ["We used e.g. Western blots.", "Dr. Smith agreed.", "Values were 0.05 and 1.5."]),
        ('He said "yes." Then he left. See Figs. 2 and 3. Was it? Yes.', ['He said "yes."', "Then he left.", "See Figs. 2 and 3.", "Was it?", "Yes."]),
        ("Mutations in BRCA1 (Fig. 2A). These were rare.", ["Mutations in BRCA1 (Fig. 2A).", "These were rare."]),
        ("The U.S. agency approved it. In 2001. 25 patients were treated.", ["The U.S. agency approved it.", "In 2001.", "25 patients were treated."]),
        ("Data from ref. 12 agree, cf. Table 1. Next.", ["Data from ref. 12 agree, cf. Table 1.", "Next."]),
        ("J. Smith measured panel b. The rest follows.", ["J. Smith measured panel b.", "The rest follows."]),
        ("Title line\n\n  First   paragraph.  \nSecond paragraph", ["Title line", "First paragraph.", "Second paragraph"]),
    ],
)
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_normalize():
    raw = "e\ufb03cient\u00a0fl\u00adow\u200b of Ca\u00b2\u207a in \uff14\u2009mM\r\nnext\tline"
    assert normalize(raw) == "efficient flow of Ca2+ in 4 mM\r\nnext line"


def test_split_sentences_speed():
    """1.5M words must take well under a few minutes: demand > 200k words/s (measured: several M/s)."""
    line = " ".join(["Cells were grown at 37 °C (p < 0.05), cf. Fig. 2 of Smith et al. in E. coli."] * 20)
    text = "\n".join([line] * 200)
    words = len(text.split())
    t = time.perf_counter()
    assert len(split_sentences(text)) == 20 * 200
    assert words / (time.perf_counter() - t) > 200_000


# ----------------------------------------------------------------------------- urls (offline mirror)


def test_urls_source_on_mirror(mirror, tmp_path, monkeypatch):
    lines = _demo_lines(3, 3)
    (tmp_path / "urls.txt").write_text("# comment\n\n" + "\n".join(lines) + "\n")
    sources = [{"kind": "urls", "url_file": str(tmp_path / "urls.txt"), "concurrency": 3}]
    stats = _build(sources, tmp_path / "out", tmp_path / "cache", mirror=mirror)
    expected = [line.split() for line in lines]  # [url, sha256] in file order
    assert [[row[2], row[3]] for row in _manifest(tmp_path / "out")] == expected
    assert stats["documents"] == 6 and stats["documents_by_kind"] == {"urls": 6} and stats["tokens"] > 20_000
    # the cache holds the documents: a second run fetches nothing and writes the same corpus
    monkeypatch.setattr("edad_core.download.fetch", lambda *a, **k: pytest.fail("fetched although cached"))
    assert _build(sources, tmp_path / "again", tmp_path / "cache", mirror=mirror)["sha256"] == stats["sha256"]


def test_urls_sha256_mismatch(mirror, tmp_path):
    url = _demo_lines(1, 0)[0].split()[0]
    sources = [{"kind": "urls", "urls": [], "url_file": str(tmp_path / "u.txt")}]
    (tmp_path / "u.txt").write_text(f"{url} {'0' * 64}\n")
    with pytest.raises(Exception, match="sha256 mismatch"):
        _build(sources, tmp_path / "out", tmp_path / "cache", mirror=mirror)
    assert not list((tmp_path / "out").iterdir())


# ----------------------------------------------------------------------------- subset


@pytest.fixture(scope="module")
def full_corpus(tmp_path_factory, mirror):
    """A small real corpus (mirror articles) built without a token limit."""
    tmp = tmp_path_factory.mktemp("full")
    (tmp / "urls.txt").write_text("\n".join(_demo_lines(4, 4)) + "\n")
    sources = [{"kind": "urls", "url_file": str(tmp / "urls.txt")}]
    stats = _build(sources, tmp / "out", tmp / "cache", mirror=mirror)
    return sources, tmp, stats


def test_subset_is_exact_and_deterministic(full_corpus, tmp_path, mirror):
    sources, tmp, full_stats = full_corpus
    full_lines = (tmp / "out" / "corpus.txt").read_text().splitlines()
    counts = np.array([len(line.split()) for line in full_lines if line])
    bounds = np.concatenate([[0], np.cumsum(counts)])
    assert bounds[-1] == full_stats["tokens"]
    rng = np.random.default_rng(0)
    ns = [int(bounds[100]), int(bounds[100]) + 1, int(bounds[-1]), int(bounds[1]), *rng.integers(1, bounds[-1], 3).tolist()]
    for i, n in enumerate(ns):
        out = tmp_path / f"n{i}"
        stats = _build(sources, out, tmp / "cache", n_tokens=n, mirror=mirror)
        k = int(np.searchsorted(bounds, n, side="right")) - 1  # sentences in the largest boundary <= n
        assert stats["tokens"] == bounds[k] <= n and stats["sentences"] == k
        # the subset is the full corpus cut after its k-th sentence, blank lines included
        kept, seen = [], 0
        for line in full_lines:
            if seen == k:
                break
            kept.append(line)
            seen += bool(line)
        assert (out / "corpus.txt").read_text() == "\n".join(kept) + "\n"
    again = _build(sources, tmp_path / "again", tmp / "cache", n_tokens=ns[0], mirror=mirror)
    assert again["sha256"] == json.loads((tmp_path / "n0" / "stats.json").read_text())["sha256"]
    assert json.loads((tmp_path / "n0" / "stats.json").read_text())["tokens"] == ns[0]


def test_n_larger_than_corpus_is_an_error(full_corpus, tmp_path, mirror):
    sources, tmp, full_stats = full_corpus
    with pytest.raises(ValueError, match=rf"corpus.n_tokens = {full_stats['tokens'] + 1} but the sources hold only {full_stats['tokens']}"):
        _build(sources, tmp_path / "out", tmp / "cache", n_tokens=full_stats["tokens"] + 1, mirror=mirror)
    first = len((tmp / "out" / "corpus.txt").read_text().split("\n", 1)[0].split())
    with pytest.raises(ValueError, match=rf"corpus.n_tokens = {first - 1} is smaller than the first sentence"):
        _build(sources, tmp_path / "out", tmp / "cache", n_tokens=first - 1, mirror=mirror)
    assert not list((tmp_path / "out").iterdir())


# ----------------------------------------------------------------------------- local


def test_local_source(tmp_path):
    src = tmp_path / "docs"
    src.mkdir()
    (src / "b.txt").write_text("==== Front\nJournal line.\n==== Body\nBody of b [1, 2]. It has two sentences.\n==== Refs\n1. A ref.\n")
    (src / "a.nxml").write_bytes(b"<article><body><p>Body of a.</p></body></article>")
    (tmp_path / "c.txt").write_text("\ufeffBody of c.\n")
    sources = [{"kind": "local", "paths": [str(src / "*"), str(tmp_path / "c.txt")]}]
    _build(sources, tmp_path / "out", tmp_path / "cache")
    assert _read_corpus(tmp_path / "out" / "corpus.txt") == [
        ["Body of a."], ["Body of b.", "It has two sentences."], ["Body of c."]
    ]
    rows = _manifest(tmp_path / "out")
    assert [r[1] for r in rows] == [str(src / "a.nxml"), str(src / "b.txt"), str(tmp_path / "c.txt")]
    assert rows[1][3] == hashlib.sha256((src / "b.txt").read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "sources, message",
    [
        (lambda d: [{"kind": "local", "paths": ["/nonexistent/x.txt"]}], r"corpus\.sources\[0\]\.paths\[0\]: no such file: /nonexistent/x\.txt"),
        (lambda d: [{"kind": "local", "paths": ["/nonexistent/*.txt"]}], r"corpus\.sources\[0\]\.paths\[0\]: pattern .* matches no file"),
        (lambda d: [{"kind": "local", "paths": [str(d / "ok.txt")]}, {"kind": "s3"}], r"corpus\.sources\[1\]\.kind: unknown source kind 's3'"),
        (lambda d: [{"kind": "local", "paths": [str(d / "ok.txt")], "path": "x"}], r"corpus\.sources\[0\]: unknown key\(s\) \['path'\]"),
        (lambda d: [{"kind": "pmc", "format": "txt"}], r"corpus\.sources\[0\]: unknown key\(s\) \['format'\] for kind 'pmc'"),
        (lambda d: [{"kind": "pmc", "concurrency": 0}], r"corpus\.sources\[0\]\.concurrency: expected a positive integer"),
        (lambda d: [{"kind": "urls", "urls": ["https://example.org/a.pdf"]}], r"corpus\.sources\[0\]\.urls\[0\]: .* neither \.txt nor JATS"),
        (lambda d: [{"kind": "urls", "url_file": str(d / "bad_urls.txt")}], r"bad_urls\.txt:2: expected '<url> \[<sha256>\]'"),
        (lambda d: [{"kind": "urls", "url_file": str(d / "missing.txt")}], r"corpus\.sources\[0\]\.url_file: no such file"),
        (lambda d: [{"kind": "local", "paths": [str(d / "broken.xml")]}], r"broken\.xml: malformed XML at line 3"),
        (lambda d: [], r"corpus\.sources: expected a non-empty list"),
    ],
)
def test_bad_input(sources, message, tmp_path):
    (tmp_path / "ok.txt").write_text("Fine text.\n")
    (tmp_path / "broken.xml").write_text("<article>\n<body>\n<p>unclosed</body>\n</article>\n")
    (tmp_path / "bad_urls.txt").write_text("https://example.org/a.txt\nhttps://example.org/b.txt not-a-sha\n")
    with pytest.raises(ValueError, match=message):
        _build(sources(tmp_path), tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_iter_documents_streams(tmp_path):
    """Documents come one at a time: the first is available before later (broken) ones are read."""
    (tmp_path / "a.txt").write_text("First.\n")
    (tmp_path / "b.xml").write_text("<article><body><p>broken</article>")
    docs = iter_documents([{"kind": "local", "paths": [str(tmp_path / "a.txt"), str(tmp_path / "b.xml")]}], cache_dir=tmp_path)
    assert next(docs).text == "First.\n"
    bad = next(docs)  # a document that does not parse is reported, not raised: the stream goes on
    assert bad.id.endswith("b.xml") and "malformed XML" in bad.error


def _bad_documents(folder: Path) -> list[Path]:
    """The ways one document goes bad in a long run: truncated XML, binary bytes, an empty file, corrupt gzip."""
    article = b"<article><front><article-meta><title-group><article-title>T</article-title></title-group>"
    files = {"truncated.xml": article[:40], "binary.txt": bytes(range(256)) * 4, "empty.xml": b"",
             "corrupt.xml": b"\x1f\x8b\x08\x00garbage"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def test_bad_documents_are_skipped_counted_and_named_below_the_threshold(tmp_path, caplog):
    good = []
    for i in range(40):
        good.append(tmp_path / f"good{i}.txt")
        good[-1].write_text(f"Document number {i} has a sentence. It has another one.\n")
    empty = tmp_path / "blank.txt"
    empty.write_text("   \n")
    bad = _bad_documents(tmp_path)
    sources = [{"kind": "local", "paths": [str(p) for p in [*good[:20], *bad, empty, *good[20:]]]}]
    out = tmp_path / "out"
    stats = build_corpus(sources, out / "c.txt", out / "s.json", out / "m.tsv", n_tokens=None, cache_dir=tmp_path,
                         max_bad_fraction=0.1, exclude=[str(good[0])])
    assert (stats["documents"], stats["bad_documents"], stats["empty_documents"], stats["excluded_documents"]) == (
        39, 4, 1, 1)
    assert [b["id"] for b in stats["bad_examples"]] == [str(p) for p in bad]
    assert all(f"skipping local document {p}" in caplog.text for p in bad)
    assert "Document number 0 " not in (out / "c.txt").read_text()

    with pytest.raises(ValueError, match=r"4 of 44 documents could not be read, more than corpus\.max_bad_fraction "
                                         r"= 0\.05: local document .*truncated\.xml"):
        build_corpus(sources, out / "c.txt", out / "s.json", out / "m.tsv", n_tokens=None, cache_dir=tmp_path,
                     max_bad_fraction=0.05, exclude=[str(good[0])])


def test_a_url_listed_twice_is_read_once(tmp_path, mirror, caplog):
    url = _demo_lines(1, 0)[0].split()[0]
    stats = _build([{"kind": "urls", "urls": [url, url]}], tmp_path / "out", tmp_path / "cache", mirror=mirror)
    assert stats["documents"] == 1 and len(_manifest(tmp_path / "out")) == 1
    assert "is listed more than once" in caplog.text
