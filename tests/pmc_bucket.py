"""A fake PMC Cloud Service bucket for tests/test_pmc.py: written into a temp folder, served over HTTP like S3.

    population = make_population()                 # 400 articles, PMCIDs spread over 1M-12M, every case below
    write_bucket(root, population)                 # version folders, metadata/, dated S3 inventories
    with serve(root, max_keys=50) as server: ...   # ListObjectsV2 pages with continuation tokens, GETs; server.url
    replace_part(root, date, 0, data)              # a damaged inventory part (the manifest's md5 follows it)

The layout follows the bucket's README (2026): ``PMC<id>.<v>/PMC<id>.<v>.xml`` and ``.json`` (also under
``metadata/``), ``xml_url`` with ``?md5=``, and S3 inventories under ``inventory-reports/pmc-oa-opendata/metadata/``:
``2026-04-30T01-00Z`` (older, without the last 20 articles), ``2026-05-01T01-00Z`` (all of them, two gzipped CSV
parts) and ``2026-05-02T01-00Z`` (still being written: no manifest.json yet). Each `FakeArticle` knows what the
client must make of it (`expect`, `expect_version`): CASES lists the crafted ones (versions with different
licences, author manuscripts, retracted, null and unknown flags, notices); the rest are plain published articles.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import gzip
import hashlib
import http.server
import io
import json
import random
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

INVENTORY = "inventory-reports/pmc-oa-opendata/metadata/"
INVENTORY_DATES = ("2026-04-30T01-00Z", "2026-05-01T01-00Z")
WORDS = ("cells protein expression tumour patients mice gene binding receptor signalling membrane kinase "
         "levels analysis samples response infection treatment increased reduced observed significant").split()


def meta(license="CC BY", retracted=False, open_access=True, manuscript=False, xml=True) -> dict:
    """One version's metadata flags as the bucket writes them (xml=False: no XML rendition)."""
    return {"license_code": license, "is_retracted": retracted, "is_pmc_openaccess": open_access,
            "is_manuscript": manuscript, "xml": xml}


# name: (versions, JATS article-type, expected reason, expected version)
CASES = {
    "cc0": ({1: meta("CC0")}, "research-article", "kept", 1),
    "cc_by_sa": ({1: meta("CC BY-SA")}, "research-article", "kept", 1),
    "cc_by_nd": ({1: meta("CC BY-ND")}, "research-article", "kept", 1),
    "non_commercial": ({1: meta("CC BY-NC")}, "research-article", "excluded_license", None),
    "nc_nd": ({1: meta("CC BY-NC-ND")}, "research-article", "excluded_license", None),
    "licence_null": ({1: meta(None)}, "research-article", "excluded_license", None),
    "retracted": ({1: meta(retracted=True)}, "research-article", "excluded_retracted", None),
    "retracted_later": ({1: meta(), 2: meta(retracted=True)}, "research-article", "excluded_retracted", None),
    "retracted_null": ({1: meta(retracted=None)}, "research-article", "excluded_retracted_unknown", None),
    "retracted_odd": ({1: meta(retracted="pending")}, "research-article", "excluded_retracted_unknown", None),
    "not_open_access": ({1: meta(open_access=False)}, "research-article", "excluded_not_openaccess", None),
    "open_access_null": ({1: meta(open_access=None)}, "research-article", "excluded_openaccess_unknown", None),
    "manuscript_then_published": ({1: meta(manuscript=True), 2: meta()}, "research-article", "kept", 2),
    "published_then_manuscript": ({1: meta(), 2: meta(manuscript=True)}, "research-article", "kept", 1),
    "manuscript_only_allowed": ({1: meta(manuscript=True), 2: meta("CC BY-NC")}, "research-article", "kept", 1),
    "two_published": ({1: meta(), 2: meta("CC0")}, "research-article", "kept", 2),
    "nothing_allowed": ({1: meta("CC BY-NC", manuscript=True), 2: meta("CC BY-NC-SA")}, "research-article",
                        "excluded_license", None),
    "manuscript_null": ({1: meta(manuscript=None)}, "research-article", "kept", 1),
    "no_xml": ({1: meta(xml=False)}, "research-article", "no_xml", None),
    "correction": ({1: meta()}, "correction", "excluded_article_type", None),
    "retraction_notice": ({1: meta()}, "retraction", "excluded_article_type", None),
    "expression_of_concern": ({1: meta()}, "expression-of-concern", "excluded_article_type", None),
}


@dataclass
class FakeArticle:
    number: int  # the PMCID's digits
    case: str
    versions: dict[int, dict]
    article_type: str
    expect: str
    expect_version: int | None
    sentences: list[str] = field(default_factory=list)

    @property
    def pmcid(self) -> str:
        return f"PMC{self.number}"


def make_population(n: int = 400, copies: int = 3, seed: int = 0) -> list[FakeArticle]:
    """`copies` articles of every case, the rest plain published CC BY articles; PMCIDs uniform over 1M-12M."""
    rng = random.Random(seed)
    numbers = rng.sample(range(1_000_000, 12_000_000), n)
    cases = [name for name in CASES for _ in range(copies)]
    cases += ["plain"] * (n - len(cases))
    rng.shuffle(cases)
    articles = []
    for number, case in zip(numbers, cases):
        versions, article_type, expect, version = CASES.get(case, ({1: meta()}, "research-article", "kept", 1))
        sentences = [f"Article PMC{number} is a {case.replace('_', ' ')} article."]
        for _ in range(rng.randint(8, 30)):
            words = rng.choices(WORDS, k=rng.randint(6, 14))
            sentences.append(" ".join(words).capitalize() + ".")
        articles.append(FakeArticle(number, case, versions, article_type, expect, version, sentences))
    return articles


def article_xml(article: FakeArticle, version: int, sentences: list[str] | None = None) -> bytes:
    body = "".join(f"<p>{escape(s)}</p>" for s in sentences or article.sentences)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<article article-type="{article.article_type}"><front><article-meta>'
            f"<title-group><article-title>Title of {article.pmcid}.{version}</article-title></title-group>"
            f"</article-meta></front><body><sec><title>Results</title>{body}</sec></body></article>").encode()


def write_version(root: Path, article: FakeArticle, version: int, xml: bytes, xml_md5: str | None = None) -> None:
    """The version's folder (XML and metadata JSON) and its copy under metadata/; `xml_md5` overrides the
    md5 the metadata states (default: that of `xml`)."""
    name = f"{article.pmcid}.{version}"
    flags = dict(article.versions[version])
    has_xml = flags.pop("xml")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.xml").write_bytes(xml)
    md5 = xml_md5 or hashlib.md5(xml).hexdigest()
    metadata = {"pmcid": article.pmcid, "version": version, **flags,
                "xml_url": f"s3://pmc-oa-opendata/{name}/{name}.xml?md5={md5}" if has_xml else None,
                "pdf_url": f"s3://pmc-oa-opendata/{name}/{name}.pdf"}
    data = json.dumps(metadata, indent=1).encode()
    (folder / f"{name}.json").write_bytes(data)
    (root / "metadata").mkdir(exist_ok=True)
    (root / "metadata" / f"{name}.json").write_bytes(data)


def _inventory(root: Path, date: str, articles: list[FakeArticle], parts: int) -> None:
    """An S3 inventory as AWS writes it: dated manifest.json naming gzipped CSV parts under data/."""
    rows = [["pmc-oa-opendata", f"metadata/{a.pmcid}.{v}.json", "512"] for a in articles for v in a.versions]
    rows += [["pmc-oa-opendata", "README.txt", "100"], ["pmc-oa-opendata", "metadata/", "0"]]
    files = []
    for i in range(parts):
        data = gzipped_rows(rows[i::parts])
        key = f"{INVENTORY}data/{date}-part{i}.csv.gz"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
        files.append({"key": key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()})
    manifest = {"sourceBucket": "pmc-oa-opendata", "version": "2016-11-30", "fileFormat": "CSV",
                "fileSchema": "Bucket, Key, Size", "files": files}
    (root / INVENTORY / date).mkdir(parents=True)
    (root / INVENTORY / date / "manifest.json").write_text(json.dumps(manifest, indent=1))


def part_path(root: Path, date: str, index: int) -> Path:
    return root / f"{INVENTORY}data/{date}-part{index}.csv.gz"


def part_rows(root: Path, date: str, index: int) -> list[list[str]]:
    return list(csv.reader(io.StringIO(gzip.decompress(part_path(root, date, index).read_bytes()).decode())))


def gzipped_rows(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return gzip.compress(text.getvalue().encode(), mtime=0)


def replace_part(root: Path, date: str, index: int, data: bytes) -> None:
    """Part `index` of the inventory `date` becomes `data`, and the manifest states its size and md5 (so the
    damage is in what NCBI wrote, not in the transfer)."""
    part_path(root, date, index).write_bytes(data)
    manifest_path = root / INVENTORY / date / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][index].update(size=len(data), MD5checksum=hashlib.md5(data).hexdigest())
    manifest_path.write_text(json.dumps(manifest, indent=1))


def write_bucket(root: Path, articles: list[FakeArticle]) -> None:
    for article in articles:
        for version in article.versions:
            write_version(root, article, version, article_xml(article, version))
    (root / "README.txt").write_text("Fake PMC bucket for the tests.\n")
    (root / "PMC-stray.txt").write_text("an object directly under the prefix, not an article folder\n")
    _inventory(root, INVENTORY_DATES[0], articles[:-20], parts=1)
    _inventory(root, INVENTORY_DATES[1], articles, parts=2)
    (root / INVENTORY / "2026-05-02T01-00Z").mkdir()
    (root / INVENTORY / "2026-05-02T01-00Z" / "manifest.checksum").write_text("being written\n")


class _S3(http.server.BaseHTTPRequestHandler):
    """ListObjectsV2 (prefix, delimiter, max-keys, continuation-token) and GET of the files under server.root."""

    def log_message(self, *args):
        """Keep test output quiet: no per-request lines on stderr."""

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        self.server.requests.append(self.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/" and query.get("list-type") == ["2"]:
            self.server.listings += 1
            body = self._listing(query)
            if self.server.listings in self.server.cut_listings:  # a page cut short, still with status 200
                body = body[: len(body) // 2]
            return self._send(body)
        path = self.server.root / urllib.parse.unquote(url.path.lstrip("/"))
        if not path.is_file():
            return self.send_error(404)
        self._send(path.read_bytes())

    def _send(self, body: bytes):
        self.send_response(200)
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
        stuck = self.server.stuck_listing and self.server.listings < 100  # then it gives up, so a client ends
        if "continuation-token" in q and not stuck:  # the token: the last name sent, then padding (S3's tokens are long)
            after = base64.urlsafe_b64decode(q["continuation-token"][0].split("~")[0]).decode()
            names = [n for n in names if n > after]
        page, more = names[:max_keys], len(names) > max_keys
        parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">']
        parts.append(f"<Name>pmc-oa-opendata</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount>")
        parts.append(f"<MaxKeys>{max_keys}</MaxKeys><IsTruncated>{'true' if more else 'false'}</IsTruncated>")
        for n in page:
            if entries[n]:
                parts.append(f"<CommonPrefixes><Prefix>{escape(n)}</Prefix></CommonPrefixes>")
            else:
                parts.append(f"<Contents><Key>{escape(n)}</Key><Size>1</Size></Contents>")
        if more:
            token = base64.urlsafe_b64encode(page[-1].encode()).decode() + "~" + "0" * self.server.token_padding
            parts.append(f"<NextContinuationToken>{token}</NextContinuationToken>")
        return ("".join(parts) + "</ListBucketResult>").encode()


@contextlib.contextmanager
def serve(root: Path, *, max_keys: int = 50, token_padding: int = 0):
    """The bucket at `root` on 127.0.0.1 (server.url). server.requests logs every path asked for; listing
    answers number server.cut_listings (1-based) come cut in half; tokens carry `token_padding` extra characters;
    with server.stuck_listing every listing answer is the first page again, with the same token (for its first
    99 answers)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _S3)
    server.root, server.max_keys, server.token_padding, server.stuck_listing = root, max_keys, token_padding, False
    server.requests, server.listings, server.cut_listings = [], 0, set()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
