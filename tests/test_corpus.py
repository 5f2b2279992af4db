"""edad_core.corpus: sentence splitting, the three sources (pmc on a fixture bucket served over HTTP, urls on the
offline mirror, local files), the N-token subset, manifest/stats, and bad input."""

import base64
import hashlib
import http.server
import json
import shutil
import threading
import time
import urllib.parse
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest

from edad_core.corpus import build_corpus, iter_documents, normalize, split_sentences

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"
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
    assert rows[0] == "kind\tdoc_id\tlocation\tsha256\tlicense" and len(rows) == 1 + len(docs)
    return stats


def _build(sources, out: Path, cache: Path, n_tokens=None, mirror=None) -> dict:
    build_corpus(
        sources, out / "corpus.txt", out / "stats.json", out / "manifest.tsv", n_tokens=n_tokens, mirror=mirror, cache_dir=cache
    )
    return _check_outputs(out)


def _manifest(out: Path) -> list[list[str]]:
    return [row.split("\t") for row in (out / "manifest.tsv").read_text().splitlines()[1:]]


def _demo_lines(n_craft: int, n_plos: int) -> list[str]:
    lines = [line for line in DEMO_URLS.read_text().splitlines() if line and not line.startswith("#")]
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


# ----------------------------------------------------------------------------- pmc (fixture bucket over HTTP)


class _Bucket(http.server.BaseHTTPRequestHandler):
    """S3 ListObjectsV2 (prefix, delimiter, max-keys, continuation-token) and GET of objects under server.root."""

    def log_message(self, *args):
        """Keep test output quiet: no per-request lines on stderr."""

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        self.server.requests.append(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/" and query.get("list-type") == ["2"]:
            return self._send(self._listing(query), "application/xml")
        path = self.server.root / urllib.parse.unquote(url.path.lstrip("/"))
        if not path.is_file():
            self.send_error(404)
            return
        time.sleep(0.3 if path.name.startswith("PMC100.") else 0.0)  # the first article finishes last
        self._send(path.read_bytes(), "application/octet-stream")

    def _send(self, body: bytes, kind: str):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _listing(self, q) -> bytes:
        prefix, delim = q.get("prefix", [""])[0], q.get("delimiter", [""])[0]
        max_keys = min(int(q.get("max-keys", ["1000"])[0]), self.server.max_keys)
        entries = {}  # name -> is a common prefix
        for p in self.server.root.rglob("*"):
            key = p.relative_to(self.server.root).as_posix()
            if p.is_file() and key.startswith(prefix):
                rest = key[len(prefix) :]
                if delim and delim in rest:
                    entries[prefix + rest[: rest.index(delim) + 1]] = True
                else:
                    entries[key] = False
        names = sorted(entries)
        if "continuation-token" in q:
            after = base64.urlsafe_b64decode(q["continuation-token"][0]).decode()
            names = [n for n in names if n > after]
        page, more = names[:max_keys], len(names) > max_keys
        parts = ['<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>fixture</Name>']
        parts.append(f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>")
        parts.append(f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>")
        for n in page:
            if entries[n]:
                parts.append(f"<CommonPrefixes><Prefix>{escape(n)}</Prefix></CommonPrefixes>")
            else:
                parts.append(f"<Contents><Key>{escape(n)}</Key><Size>1</Size></Contents>")
        if more:
            token = base64.urlsafe_b64encode(page[-1].encode()).decode()
            parts.append(f"<NextContinuationToken>{token}</NextContinuationToken>")
        return ("".join(parts) + "</ListBucketResult>").encode()


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """The fixture bucket (a copy, so a test may alter it) served on 127.0.0.1; at most 2 keys per listing page."""
    monkeypatch.delenv("EDAD_MIRROR", raising=False)
    root = tmp_path / "bucket"
    shutil.copytree(FIXTURES / "bucket", root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bucket)
    server.root, server.requests, server.max_keys = root, [], 2
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _pmc(server, **extra) -> dict:
    return {"kind": "pmc", "bucket_url": f"http://127.0.0.1:{server.server_address[1]}", "concurrency": 4, **extra}


def test_pmc_source_on_fixture_bucket(bucket, tmp_path):
    sources = [_pmc(bucket, format="txt")]
    stats = _build(sources, tmp_path / "out", tmp_path / "cache")
    rows = _manifest(tmp_path / "out")
    # newest version of PMC100 only; PMC200 (CC BY-NC) and PMC300 (retracted) and PMC400 (no text) are out;
    # order is key order although PMC100.2 is served last
    assert [r[1] for r in rows] == ["PMC100.2", "PMC1000.1", "PMC500.1"]
    assert [r[4] for r in rows] == ["CC BY", "CC0", "cc-by"]
    for row in rows:
        art = row[1]
        assert row[2] == f"{sources[0]['bucket_url']}/{art}/{art}.txt"
        assert row[3] == hashlib.sha256((bucket.root / art / f"{art}.txt").read_bytes()).hexdigest()
    assert stats["pmc_articles"] == {
        "pmc_kept": 3, "pmc_excluded_license": 1, "pmc_excluded_retracted": 1, "pmc_no_rendition": 1,
    }
    assert _read_corpus(tmp_path / "out" / "corpus.txt") == [
        ["Introduction", "Article one hundred reports that E. coli grows at 37 degrees.", "Growth stopped after 5 h."],
        ["Introduction", "Article one thousand is in the public domain.", "Its metadata names no renditions."],
        ["Introduction", "Article five hundred spells its licence in lower case.", "It is kept."],
    ]
    listings = [r for r in bucket.requests if r.startswith("/?")]
    assert len(listings) >= 4 and sum("continuation-token" in r for r in listings) == len(listings) - 1
    assert not any("PMC200.1.txt" in r or "PMC300.1.txt" in r or ".pdf" in r for r in bucket.requests)

    # resumable: a second run with the same cache lists again but fetches no article file
    bucket.requests.clear()
    assert _build(sources, tmp_path / "again", tmp_path / "cache")["sha256"] == stats["sha256"]
    assert bucket.requests and all(r.startswith("/?") for r in bucket.requests)


def test_pmc_jats_and_max_articles(bucket, tmp_path):
    _build([_pmc(bucket, max_articles=2)], tmp_path / "out", tmp_path / "cache")  # format: xml is the default
    assert _read_corpus(tmp_path / "out" / "corpus.txt") == [
        ["Title of PMC100.2", "Abstract of PMC100.2 in JATS.", "Introduction",
         "Article one hundred reports that E. coli grows at 37 degrees.", "Growth stopped after 5 h."],
        ["Title of PMC1000.1", "Abstract of PMC1000.1 in JATS.", "Introduction",
         "Article one thousand is in the public domain.", "Its metadata names no renditions."],
    ]
    assert [r[2].rsplit("/", 1)[1] for r in _manifest(tmp_path / "out")] == ["PMC100.2.xml", "PMC1000.1.xml"]


def test_pmc_md5_mismatch(bucket, tmp_path):
    (bucket.root / "PMC500.1" / "PMC500.1.txt").write_text("==== Body\nTampered.\n")
    with pytest.raises(ValueError, match=r"PMC500\.1\.txt: md5 mismatch"):
        _build([_pmc(bucket, format="txt")], tmp_path / "out", tmp_path / "cache")
    assert not list((tmp_path / "out").iterdir())


def test_pmc_missing_metadata_field(bucket, tmp_path):
    with pytest.raises(ValueError, match=r"no field 'is_withdrawn' \(corpus\.sources\[0\]\.retracted_field\)"):
        _build([_pmc(bucket, retracted_field="is_withdrawn")], tmp_path / "out", tmp_path / "cache")
    assert not list((tmp_path / "out").iterdir())


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "sources, message",
    [
        (lambda d: [{"kind": "local", "paths": ["/nonexistent/x.txt"]}], r"corpus\.sources\[0\]\.paths\[0\]: no such file: /nonexistent/x\.txt"),
        (lambda d: [{"kind": "local", "paths": ["/nonexistent/*.txt"]}], r"corpus\.sources\[0\]\.paths\[0\]: pattern .* matches no file"),
        (lambda d: [{"kind": "local", "paths": [str(d / "ok.txt")]}, {"kind": "s3"}], r"corpus\.sources\[1\]\.kind: unknown source kind 's3'"),
        (lambda d: [{"kind": "local", "paths": [str(d / "ok.txt")], "path": "x"}], r"corpus\.sources\[0\]: unknown key\(s\) \['path'\]"),
        (lambda d: [{"kind": "pmc", "format": "pdf"}], r"corpus\.sources\[0\]\.format: expected 'txt' or 'xml'"),
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
    url = "https://raw.githubusercontent.com/UCDenver-ccp/CRAFT/2abe82b8bb8089448b84937d5f61d8c218011322/articles/txt/11319941.txt"
    stats = _build([{"kind": "urls", "urls": [url, url]}], tmp_path / "out", tmp_path / "cache", mirror=mirror)
    assert stats["documents"] == 1 and len(_manifest(tmp_path / "out")) == 1
    assert "is listed more than once" in caplog.text
