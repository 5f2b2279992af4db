"""Domain corpus (docs/design.md §3, stage 2): read documents from the configured sources, normalise,
split into sentences, and write a deterministic subset of N whitespace tokens.

    sources = config["corpus"]["sources"]
    stats = build_corpus(sources, "corpus.txt", "stats.json", "manifest.tsv", n_tokens=500_000_000,
                         cache_dir="work/corpus_cache")   # also mirror, max_bad_fraction, exclude
    for doc in iter_documents(sources, cache_dir="work/corpus_cache"): ...   # Document or BadDocument, streamed
    sentences = split_sentences(normalize(doc.text))

Details sit with the code: the sources at `check_sources`, text at `_document_text`, `normalize` and
`split_sentences`, order, subset, outputs and bad documents at `build_corpus`.
"""

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import unicodedata
import urllib.parse
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from edad_core.download import DownloadError, cached_bytes
from edad_core.files import atomic_files
from edad_core.jats import article_text, jats_to_text, parse_article, strip_numeric_citations
from edad_core.pmc import DATED, fetch_article, find_candidates, odd_values

log = logging.getLogger(__name__)

DEFAULTS = {
    "pmc": {
        "bucket_url": "https://pmc-oa-opendata.s3.amazonaws.com",
        "prefix": "PMC",
        "inventory": "latest",
        "inventory_prefix": "inventory-reports/pmc-oa-opendata/metadata/",
        "subset_key": "edad-pmc-subset-1",
        "licenses": ["CC0", "CC BY", "CC BY-SA", "CC BY-ND"],
        "exclude_article_types": ["correction", "retraction", "partial-retraction", "expression-of-concern"],
        "max_articles": None,
        "concurrency": 8,
        "page_size": 1000,
    },
    "urls": {"urls": [], "url_file": None, "concurrency": 4},
    "local": {"paths": []},
}
FORMATS = {".txt": "txt", ".xml": "xml", ".nxml": "xml"}
SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class BadDocument:
    """A document that could not be fetched, decoded or parsed: skipped and counted, not fatal alone."""

    def __init__(self, kind: str, doc_id: str, error: Exception):
        self.kind, self.id, self.error = kind, doc_id, f"{type(error).__name__}: {error}"

    def __str__(self) -> str:
        return f"{self.kind} document {self.id} ({self.error})"


# What reading one document can raise: a failed download, bad bytes or XML, a digest mismatch, a torn file
DOCUMENT_ERRORS = (ValueError, OSError, EOFError, zlib.error, DownloadError)


@dataclass(frozen=True)
class Document:
    kind: str  # source kind
    id: str  # PMC<id>.<version>, URL or path
    location: str  # where the bytes came from (URL or path)
    sha256: str  # of those bytes
    text: str
    license: str = ""
    is_manuscript: str = ""  # pmc: 'true' for an author manuscript, 'false' for the published version, 'unknown'


# ----------------------------------------------------------------------------- text


# soft hyphen, zero-width characters and BOM vanish; other control characters become spaces
_TRANSLATE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None) | {
    c: " " for c in [*range(32), *range(127, 160)] if chr(c) not in "\n\r\x85"
}


def normalize(text: str) -> str:
    """Unicode NFKC (ligatures, full-width forms, odd spaces), soft hyphens/zero-width characters removed,
    control characters to spaces. Line breaks (paragraphs) stay."""
    return unicodedata.normalize("NFKC", text).translate(_TRANSLATE)


# a period is not a sentence end after these words (compared lowercased, without the final period)
ABBREVIATIONS = frozenset(
    "al fig figs eq eqs ref refs vs approx ca cf no nos vol vols dr prof mr mrs ms st sp spp subsp ssp var "
    "resp viz suppl inc ltd co corp jr dept univ ed eds pp ph.d".split()
)
INITIALISM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # e.g, i.e, U.S (the final period is not in the word)
# end punctuation, optional closing quotes/brackets, whitespace, then an upper-case letter or digit
BOUNDARY = re.compile(r"[.!?][\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9\u0391-\u03a9])")


def _is_abbreviation(line: str, period: int) -> bool:
    word = line[line.rfind(" ", 0, period) + 1 : period].lstrip("\"'([\u201c\u2018")
    # a single capital is an initial or a genus ("J. Smith", "E. coli", "S. cerevisiae")
    return (len(word) == 1 and word.isupper()) or word.lower() in ABBREVIATIONS or bool(INITIALISM.fullmatch(word))


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, whitespace collapsed; every line is a paragraph (never joined to the next).

    A sentence ends at . ! or ? (plus closing quotes/brackets) followed by whitespace and an upper-case
    letter, a digit or an opening quote/bracket, except after an abbreviation ("et al.", "Fig.", "vs.",
    "approx.", "e.g.", "i.e.") or a single capital letter ("E. coli", "J. Smith"). Decimals (0.05) never split: no space follows
    their period. Known misses: a sentence ending in an abbreviation or a single capital ("vitamin D.") is
    joined to the next, and a sentence starting with a lower-case word ("mRNA levels ...") is not split off.
    A regex splitter because pysbd handled about 13k words/s here, too slow for the paper's 500M tokens.
    """
    sentences = []
    for line in text.splitlines():
        line = " ".join(line.split())
        sentences += [line[start:end] for start, end in sentence_spans(line)]
    return sentences


def sentence_spans(line: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence of one line (see split_sentences), whitespace around it left out; the
    tagger (edad_core.tagger) keeps these character offsets."""
    spans, start = [], 0
    for m in BOUNDARY.finditer(line):
        if line[m.start()] == "." and _is_abbreviation(line, m.start()):
            continue
        spans.append((start, m.end()))
        start = m.end()
    spans.append((start, len(line)))
    return [(s + len(line[s:e]) - len(line[s:e].lstrip()), s + len(line[s:e].rstrip()))
            for s, e in spans if line[s:e].strip()]


PMC_TXT_SECTION = re.compile(r"^==== (\w+)[ \t]*$", re.MULTILINE)


def _document_text(data: bytes, fmt: str, name: str) -> str:
    """A document's text: JATS through edad_core.jats; ``.txt`` read as UTF-8 with one paragraph per line (only
    the Body section when the file has NCBI's ``==== Body`` markers), numeric citation brackets ("[1,2]") removed.
    build_corpus then applies `normalize` and `split_sentences`."""
    if fmt == "xml":
        return jats_to_text(data, name)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not UTF-8 text ({e})") from None
    parts = PMC_TXT_SECTION.split(text)
    if len(parts) > 1:  # NCBI's .txt: '==== Front' (journal, authors, ...), '==== Body', '==== Refs': keep Body
        text = "\n".join(body for section, body in zip(parts[1::2], parts[2::2]) if section == "Body")
    return strip_numeric_citations(text)


# ----------------------------------------------------------------------------- sources


def check_sources(sources) -> list[dict]:
    """Validate `corpus.sources` and fill defaults; errors name the config key.

    Sources (config ``corpus.sources``, a list; each item has ``kind``):

    - ``pmc``: PMC Open Access articles with the configured licences from the AWS open-data bucket
      ``pmc-oa-opendata`` over plain HTTPS (edad_core.pmc: candidates from the dated inventory or a listing, the
      keyed-hash order, version choice, licence and flag filters, md5 checks, cache), read as JATS XML (title,
      abstracts, body: the NER tasks' own genre). Notices whose JATS ``article-type`` is in
      ``exclude_article_types`` (corrections, retractions, expressions of concern) are left out and counted.
    - ``urls``: ``urls:`` (a list) and/or ``url_file:`` (one ``<url> [<sha256>]`` per line; ``#`` comments),
      ``.txt`` or JATS ``.xml``/``.nxml``, fetched through edad_core.download (mirror first), cached likewise.
    - ``local``: ``paths:``, files or glob patterns (sorted matches), ``.txt`` or ``.xml``/``.nxml``.
    """
    if not isinstance(sources, list) or not sources:
        raise ValueError("corpus.sources: expected a non-empty list of sources")
    checked = []
    for i, src in enumerate(sources):
        key = f"corpus.sources[{i}]"
        if not isinstance(src, dict):
            raise ValueError(f"{key}: expected a mapping with a `kind`, got {src!r}")
        kind = src.get("kind")
        if kind not in DEFAULTS:
            raise ValueError(f"{key}.kind: unknown source kind {kind!r} (expected one of {', '.join(DEFAULTS)})")
        unknown = set(src) - set(DEFAULTS[kind]) - {"kind"}
        if unknown:
            raise ValueError(f"{key}: unknown key(s) {sorted(unknown)} for kind {kind!r} (allowed: {sorted(DEFAULTS[kind])})")
        cfg = {**DEFAULTS[kind], **src, "key": key}  # an explicit null stays null (pmc `inventory: null`)
        for name in ("concurrency", "page_size", "max_articles"):
            value = cfg.get(name)
            if name in cfg and not (name == "max_articles" and value is None) and (type(value) is not int or value < 1):
                raise ValueError(f"{key}.{name}: expected a positive integer, got {value!r}")
        for name in ("licenses", "exclude_article_types", "urls", "paths"):
            if name in cfg and not (isinstance(cfg[name], list) and all(isinstance(x, str) for x in cfg[name])):
                raise ValueError(f"{key}.{name}: expected a list of strings, got {cfg[name]!r}")
        if kind == "pmc":
            _check_pmc(cfg)
        if kind == "urls":
            cfg["items"] = url_items(cfg)
        if kind == "local":
            cfg["items"] = _local_items(cfg)
        checked.append(cfg)
    return checked


def _check_pmc(cfg: dict) -> None:
    key = cfg["key"]
    if not 1 <= cfg["page_size"] <= 1000:
        raise ValueError(f"{key}.page_size: S3 returns at most 1000 keys per page, got {cfg['page_size']}")
    if not (cfg["inventory"] is None or cfg["inventory"] == "latest" or DATED.fullmatch(str(cfg["inventory"]))):
        raise ValueError(f"{key}.inventory: expected 'latest', a dated inventory folder such as 2026-05-01T01-00Z, "
                         f"or null (list the bucket), got {cfg['inventory']!r}")
    if not isinstance(cfg["subset_key"], str) or not 1 <= len(cfg["subset_key"].encode()) <= 64:
        raise ValueError(f"{key}.subset_key: expected a string of 1 to 64 bytes (the BLAKE2b key), got {cfg['subset_key']!r}")
    for name in ("prefix", "inventory_prefix", "bucket_url"):
        if not isinstance(cfg[name], str):
            raise ValueError(f"{key}.{name}: expected a string, got {cfg[name]!r}")


def source_files(sources) -> list[str]:
    """Local files the sources read (url_file lists, local documents): the rule's inputs, so editing one reruns it."""
    files = []
    for cfg in check_sources(sources):
        if cfg["kind"] == "urls" and cfg["url_file"]:
            files.append(cfg["url_file"])
        if cfg["kind"] == "local":
            files += [str(path) for path, _ in cfg["items"]]
    return files


def _format_of(path: str, where: str) -> str:
    fmt = FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise ValueError(f"{where}: {path!r} is neither .txt nor JATS .xml/.nxml")
    return fmt


def url_items(cfg: dict) -> list[tuple[str, str | None, str]]:
    """(url, sha256 or None, format) from `urls:` then `url_file:`."""
    items = [(u, None, _format_of(urllib.parse.urlsplit(u).path, f"{cfg['key']}.urls[{j}]")) for j, u in enumerate(cfg["urls"])]
    if cfg["url_file"]:
        path = Path(cfg["url_file"])
        if not path.is_file():
            raise ValueError(f"{cfg['key']}.url_file: no such file: {path}")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) > 2 or (len(fields) == 2 and not SHA256.fullmatch(fields[1])):
                raise ValueError(f"{path}:{n}: expected '<url> [<sha256>]', got {line!r}")
            url = fields[0]
            items.append((url, fields[1].lower() if len(fields) == 2 else None, _format_of(urllib.parse.urlsplit(url).path, f"{path}:{n}")))
    if not items:
        raise ValueError(f"{cfg['key']}: neither `urls` nor `url_file` lists any URL")
    unique = {}
    for url, sha256, fmt in items:  # a repeated URL is one document, fetched once
        if url in unique:
            if sha256 and unique[url][1] and sha256 != unique[url][1]:
                raise ValueError(f"{cfg['key']}: {url} is listed twice with different sha256")
            log.warning("%s: %s is listed more than once; it is read once", cfg["key"], url)
        unique[url] = (url, unique.get(url, (url, None))[1] or sha256, fmt)
    return list(unique.values())


def _local_items(cfg: dict) -> list[tuple[Path, str]]:
    items = []
    for j, pattern in enumerate(cfg["paths"]):
        where = f"{cfg['key']}.paths[{j}]"
        if glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if not found:
                raise ValueError(f"{where}: pattern {pattern!r} matches no file")
        elif os.path.isfile(pattern):
            found = [pattern]
        else:
            raise ValueError(f"{where}: no such file: {pattern}")
        items += [(Path(p), _format_of(p, where)) for p in found]
    if not items:
        raise ValueError(f"{cfg['key']}.paths: no paths given")
    return items


def _ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """fn(item) on `workers` threads, results in input order, at most 2 x workers items in flight."""
    with ThreadPoolExecutor(workers) as pool:
        window: deque = deque()
        try:
            for item in items:
                window.append(pool.submit(fn, item))
                if len(window) >= 2 * workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:  # closed early (enough tokens): drop what has not started
            for future in window:
                future.cancel()


def _pmc_documents(cfg: dict, mirror, cache_dir: Path, counts: Counter, exclude: set, report: dict
                   ) -> Iterator[Document | BadDocument]:
    """Documents of a pmc source in subset order (edad_core.pmc). `report`, the source's entry of stats.json
    ``pmc``, gets where the candidates came from and, for the articles read: what became of each (``articles``:
    kept, kept_manuscript, excluded_<why>, no_xml, bad, excluded by corpus.exclude), the licences kept, the notices
    left out by article type, and every null or unknown metadata value (``metadata_values``)."""
    candidates = find_candidates(cfg, mirror, cache_dir)
    articles, licenses, notices, odd = Counter(), Counter(), Counter(), {}
    report.update(candidates=candidates.provenance, articles=articles, licenses_kept=licenses,
                  article_types_left_out=notices, metadata_values=odd)

    def work(item):
        pmcid, versions = item
        try:
            article = fetch_article(pmcid, versions, cfg, mirror, cache_dir)
            if article.data is None:
                return article, None
            root = parse_article(article.data, article.url)
            if root.get("article-type") in cfg["exclude_article_types"]:
                return article, root.get("article-type")
            sha256 = hashlib.sha256(article.data).hexdigest()
            manuscript = {True: "true", False: "false", None: "unknown"}[article.is_manuscript]
            return article, Document("pmc", article.version, article.url, sha256, article_text(root), article.license, manuscript)
        except DOCUMENT_ERRORS as err:
            return None, BadDocument("pmc", pmcid, err)

    def not_excluded():  # corpus.exclude: a PMCID leaves the article out, a PMC<id>.<version> only that version
        for pmcid, versions in candidates:
            versions = [v for v in versions if f"{pmcid}.{v}" not in exclude]
            if pmcid in exclude or not versions:
                counts["excluded"] += 1
                articles["excluded"] += 1
                continue
            yield pmcid, versions

    kept = 0
    with contextlib.closing(_ordered_map(work, not_excluded(), cfg["concurrency"])) as results:
        for article, outcome in results:
            if article is None:
                articles["bad"] += 1
                yield outcome
                continue
            for meta in article.metadata:
                for name, value in odd_values(meta):
                    odd.setdefault(name, Counter())[value] += 1
            if isinstance(outcome, Document):
                articles["kept"] += 1
                articles["kept_manuscript"] += outcome.is_manuscript == "true"
                licenses[outcome.license] += 1
                yield outcome
                kept += 1
                if kept == cfg["max_articles"]:
                    return
            elif outcome is not None:
                articles["excluded_article_type"] += 1
                notices[outcome] += 1
            else:
                articles[article.reason] += 1


def _url_documents(cfg: dict, mirror, cache_dir: Path, counts: Counter, exclude: set) -> Iterator[Document]:
    def work(item):
        url, sha256, fmt = item
        try:
            data = cached_bytes(url, cache_dir, mirror, "sha256", sha256)
            return Document("urls", url, url, hashlib.sha256(data).hexdigest(), _document_text(data, fmt, url))
        except DOCUMENT_ERRORS as err:
            return BadDocument("urls", url, err)

    items = _not_excluded(cfg["items"], exclude, counts)
    with contextlib.closing(_ordered_map(work, items, cfg["concurrency"])) as results:
        yield from results


def _local_documents(cfg: dict, counts: Counter, exclude: set) -> Iterator[Document]:
    for path, fmt in _not_excluded(cfg["items"], exclude, counts):
        try:
            data = path.read_bytes()
            text = _document_text(data, fmt, str(path))
        except DOCUMENT_ERRORS as err:
            yield BadDocument("local", str(path), err)
            continue
        yield Document("local", str(path), str(path), hashlib.sha256(data).hexdigest(), text)


def _not_excluded(items, exclude: set, counts: Counter) -> list:
    """Items (location first) not listed in corpus.exclude."""
    kept = [item for item in items if str(item[0]) not in exclude]
    counts["excluded"] += len(items) - len(kept)
    return kept


def iter_documents(sources, *, mirror=None, cache_dir, counts: Counter | None = None, exclude=(),
                   pmc_report: dict | None = None) -> Iterator[Document | BadDocument]:
    """Documents of all sources, in source order (see `build_corpus`), and a BadDocument for each one that
    could not be read or parsed. `counts` counts the documents left out by `exclude` (document ids / URLs /
    paths); `pmc_report` gets each pmc source's report (see `_pmc_documents`) under its config key."""
    counts = Counter() if counts is None else counts
    pmc_report = {} if pmc_report is None else pmc_report
    cache_dir, exclude = Path(cache_dir), set(exclude)
    for cfg in check_sources(sources):
        if cfg["kind"] == "pmc":
            docs = _pmc_documents(cfg, mirror, cache_dir, counts, exclude, pmc_report.setdefault(cfg["key"], {}))
        elif cfg["kind"] == "urls":
            docs = _url_documents(cfg, mirror, cache_dir, counts, exclude)
        else:
            docs = _local_documents(cfg, counts, exclude)
        with contextlib.closing(docs):
            yield from docs


# ----------------------------------------------------------------------------- corpus


def build_corpus(sources, out_txt, stats_json, manifest_tsv, *, n_tokens: int | None, mirror=None, cache_dir,
                 max_bad_fraction: float = 0.0, exclude=()) -> dict:
    """Write the N-token corpus, its stats and its manifest; returns the stats.

    Order and subset: documents come in source order (sources as configured; pmc in the order of a keyed hash
    of the PMCID, a reproducible random permutation of the bucket's articles (edad_core.pmc); urls as listed,
    local paths as given, glob matches sorted), so the subset is a prefix that can be produced while streaming
    and the manifest lists exactly what was read: whole documents, the last one cut where N is reached. Sentences are taken while the running count
    of whitespace tokens stays <= ``n_tokens``: the first sentence that would exceed it ends the corpus, so the
    count is the largest sentence-boundary count <= N (equal to N when a boundary falls there).
    ``n_tokens: null`` takes everything; a corpus with fewer than N tokens is an error (the paper asks for
    exactly N), after which no output is left behind.

    Outputs: the corpus (one sentence per line, one blank line between documents), a stats JSON (documents,
    sentences, tokens, sha256 of the corpus file, the sources, per-kind counts and, under ``pmc``, each pmc
    source's report: the inventory (key, sha256) or listing (dates) its candidates came from and what became
    of the articles read) and a manifest TSV (kind, doc_id, location, sha256, license, is_manuscript) of every
    document that contributed, so the same corpus can be
    fetched again later (``tail -n +2 manifest.tsv | cut -f3,4`` is a valid ``url_file``).
    Everything streams (memory does not grow with the corpus) and all three outputs appear atomically.

    Bad documents: one that cannot be fetched, decoded or parsed is skipped with a warning naming it and counted in
    the stats (``bad_documents``, ``bad_examples``), as are documents with no text left (``empty_documents``) and
    those listed in ``corpus.exclude``; the build fails only when more than ``corpus.max_bad_fraction`` of the
    documents read were bad, listing the first ones.
    """
    if n_tokens is not None and (not isinstance(n_tokens, int) or n_tokens < 1):
        raise ValueError(f"corpus.n_tokens: expected a positive integer or null, got {n_tokens!r}")
    if not 0 <= max_bad_fraction <= 1:
        raise ValueError(f"corpus.max_bad_fraction: expected a number in [0, 1], got {max_bad_fraction!r}")
    bad: list[BadDocument] = []
    empty = 0
    counts: Counter = Counter()
    pmc_report: dict = {}
    by_kind: Counter = Counter()
    tokens = sentences = documents = 0
    digest = hashlib.sha256()
    outputs = [Path(out_txt), Path(stats_json), Path(manifest_tsv)]
    docs = iter_documents(sources, mirror=mirror, cache_dir=cache_dir, counts=counts, exclude=exclude,
                          pmc_report=pmc_report)
    with atomic_files(*outputs) as (txt_tmp, stats_tmp, manifest_tmp), contextlib.closing(docs):
        with open(txt_tmp, "wb") as out, open(manifest_tmp, "w", encoding="utf-8") as manifest, tqdm(
            total=n_tokens, unit="tok", unit_scale=True, desc="corpus"
        ) as bar:
            manifest.write("kind\tdoc_id\tlocation\tsha256\tlicense\tis_manuscript\n")
            full = False
            for doc in docs:
                if isinstance(doc, BadDocument):
                    log.warning("skipping %s", doc)
                    bad.append(doc)
                    continue
                lines, before = [], tokens
                for sentence in split_sentences(normalize(doc.text)):
                    n = sentence.count(" ") + 1  # whitespace tokens: sentences have single spaces, no ends
                    if n_tokens is not None and tokens + n > n_tokens:
                        full = True
                        break
                    lines.append(sentence)
                    tokens += n
                if lines:
                    chunk = ("\n" if documents else "") + "\n".join(lines) + "\n"  # blank line between documents
                    data = chunk.encode("utf-8")
                    out.write(data)
                    digest.update(data)
                    manifest.write(f"{doc.kind}\t{doc.id}\t{doc.location}\t{doc.sha256}\t{doc.license}\t{doc.is_manuscript}\n")
                    documents += 1
                    sentences += len(lines)
                    by_kind[doc.kind] += 1
                    bar.update(tokens - before)
                elif not full:
                    empty += 1  # no text after cleaning (e.g. a JATS file with an empty body)
                if full:
                    break
        read = documents + empty + len(bad)
        if bad and len(bad) > max_bad_fraction * read:
            listed = "; ".join(str(b) for b in bad[:10])
            raise ValueError(f"{len(bad)} of {read} documents could not be read, more than corpus.max_bad_fraction "
                             f"= {max_bad_fraction}: {listed}{' ...' if len(bad) > 10 else ''} (fix them, list them "
                             f"in corpus.exclude, or raise corpus.max_bad_fraction)")
        if documents == 0:
            raise ValueError(
                f"corpus.n_tokens = {n_tokens} is smaller than the first sentence" if full else "corpus.sources: the sources yielded no text"
            )
        if n_tokens is not None and not full and tokens < n_tokens:
            raise ValueError(
                f"corpus.n_tokens = {n_tokens} but the sources hold only {tokens} whitespace tokens "
                f"({documents} documents): add sources, lower corpus.n_tokens, or set it to null to take everything"
            )
        stats = {
            "documents": documents,
            "sentences": sentences,
            "tokens": tokens,
            "n_tokens": n_tokens,
            "sha256": digest.hexdigest(),
            "documents_by_kind": dict(sorted(by_kind.items())),
            "pmc": pmc_report,
            "excluded_documents": counts["excluded"],
            "empty_documents": empty,
            "bad_documents": len(bad),
            "bad_examples": [{"kind": b.kind, "id": b.id, "error": b.error} for b in bad[:20]],
            "sources": sources,
        }
        stats_tmp.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    log.info("corpus: %d documents, %d sentences, %d tokens", documents, sentences, tokens)
    return stats
