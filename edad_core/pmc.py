"""The PMC Cloud Service bucket client: which articles a `pmc` corpus source reads, in which order, and the JATS
bytes of the version of each that it takes (edad_core.corpus turns them into documents).

    candidates = find_candidates(cfg, mirror, cache_dir)  # every article of the bucket, in subset order
    candidates.provenance                                 # the inventory (key, sha256) or the listing's dates
    for pmcid, versions in candidates:                    # 'PMC123', [1, 2]
        article = fetch_article(pmcid, versions, cfg, mirror, cache_dir)
        # article.reason: 'kept' (article.data holds the JATS XML of article.version) or why it is left out

`cfg` is one checked `corpus.sources` entry of kind `pmc` (edad_core.corpus.check_sources).

The bucket ``pmc-oa-opendata`` (AWS open data, plain HTTPS, no credentials), as its README.txt and NCBI's pages
describe it in 2026: every article version is a folder ``PMC<id>.<version>/`` at the bucket root holding
``PMC<id>.<version>.xml`` (JATS), ``.txt``, ``.pdf`` and ``.json`` (metadata). Metadata fields read: ``is_retracted``,
``is_pmc_openaccess``, ``is_manuscript`` (flags: true, false or null), ``license_code`` ("CC BY", "CC0", "CC BY-NC",
...; null without a machine-readable licence) and ``xml_url`` (``s3://pmc-oa-opendata/<key>?md5=<hex>``, null when
there is no XML). A metadata file without one of the first four is an error (a renamed field must not let
retracted articles in). NCBI writes a dated S3 inventory of the bucket every day under ``inventory-reports/``
(``<inventory_prefix><YYYY-MM-DDTHH-MMZ>/manifest.json`` naming gzipped CSV files, one row per object such as
``metadata/PMC<id>.<version>.json``; kept 30 days). The legacy ``oa_comm/`` tree moved to ``deprecated/`` in April 2026 and is not read.

Candidates: the articles named in the inventory (``inventory: latest``, the newest dated one with a manifest, or
one pinned by its folder name); without one (``inventory: null``, or none found) a full ListObjectsV2 listing of
the article folders (about 9,000 pages of 1000). `Candidates.provenance` records which: the manifest's key and
sha256, or the listing's start and end time.

Order: by a keyed hash of the PMCID (BLAKE2b, 64 bits, keyed with ``subset_key``), not by key: S3 key order is
string order ("PMC10..." before "PMC2..."), so a prefix of it is a narrow slice of the PMCID range and of intake
dates. The hash order is a uniform random permutation that the same candidates and key give again; the corpus
takes whole articles in this order until it has its N tokens.

Version: an article with a retracted version is left out. Of its versions, the published ones (``is_manuscript``
false) come first, then those whose ``is_manuscript`` is null or unknown, then author manuscripts, each newest
first; the first with ``is_retracted`` false, ``is_pmc_openaccess`` true and a licence in ``licenses`` (compared
ignoring case, spaces and hyphens) is taken: a null or unknown ``is_retracted`` or ``is_pmc_openaccess`` never lets
a version in. With no such version the article is left out, for the reason of its first-ranked one.

Robustness: a listing page that does not parse is fetched again, and a listing that gives a continuation token
a second time stops with an error (it would never end). An inventory part that is not gzipped CSV or is cut
short stops the build naming its URL; rows too short for the Key column are counted (``rows_without_key`` in the
provenance) and more than 1% of them stop it. A metadata file that is not JSON, lacks a field or has one of the
wrong type makes its article a bad document, named. The XML is checked against the metadata's md5
and cached under ``cache_dir``, and a mismatch fetches the article's metadata again once (NCBI updated the
object after the cached metadata was read) before the article counts as bad.
"""

from __future__ import annotations

import csv
import datetime
import gzip
import hashlib
import io
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import xml.etree.ElementTree as ET
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edad_core.download import DigestMismatch, DownloadError, cached_bytes, fetch_bytes

log = logging.getLogger(__name__)

FOLDER = re.compile(r"(PMC(\d{1,9}))\.(\d{1,9})/")  # a listing's CommonPrefix (9 digits: packed in 32 bits)
INVENTORY_KEY = re.compile(r"(?:metadata/)?(PMC(\d{1,9}))\.(\d{1,9})(?:\.json|/.*)")  # metadata/PMC1.2.json
DATED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z")  # an inventory's folder name
FLAGS = ("is_retracted", "is_pmc_openaccess", "is_manuscript")
LICENSE = "license_code"
MAX_ROWS_WITHOUT_KEY = 0.01  # an inventory with more of its rows too short for the Key column is damaged
LISTING_ATTEMPTS = 3
LISTING_BACKOFF = 2.0  # seconds before the second attempt at a listing page, doubled for each further one
MANUSCRIPT_RANK = {False: 0, None: 1, True: 2}  # published first, then unknown, then author manuscripts


def norm_license(code) -> str:
    return re.sub(r"[\s_-]+", "", str(code)).upper()


def flag(value) -> bool | None:
    """A metadata flag as True or False; None when it is null or not a yes/no value."""
    if isinstance(value, bool):
        return value
    return {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(str(value).strip().lower())


def odd_values(meta: dict) -> Iterator[tuple[str, str]]:
    """(field, 'null' | 'unknown') for each flag or licence of a version's metadata that is null, or a flag that
    is not a yes/no value: the cases that keep a version out (stats.json counts them)."""
    for name in (*FLAGS, LICENSE):
        if meta[name] is None:
            yield name, "null"
        elif name in FLAGS and flag(meta[name]) is None:
            yield name, "unknown"


def subset_rank(pmcid: str, key: str) -> int:
    """The article's place in subset order: a 64-bit keyed hash of 'PMC<id>'."""
    return int.from_bytes(hashlib.blake2b(pmcid.encode(), key=key.encode(), digest_size=8).digest(), "big")


# ----------------------------------------------------------------------------- candidates


def _listing_page(url: str, mirror) -> ET.Element:
    """One ListObjectsV2 page; an answer that is not one (cut short, an error page) is fetched again."""
    for attempt in range(LISTING_ATTEMPTS):
        try:
            page = ET.fromstring(fetch_bytes(url, mirror=mirror))
            problem = None if page.tag.rpartition("}")[2] == "ListBucketResult" else f"root element <{page.tag}>"
        except ET.ParseError as e:
            problem = str(e)
        if problem is None:
            return page
        if attempt + 1 < LISTING_ATTEMPTS:
            log.warning("%s: not an S3 ListObjectsV2 answer (%s); fetching it again", url, problem)
            time.sleep(LISTING_BACKOFF * 2**attempt)
    raise ValueError(f"{url}: not an S3 ListObjectsV2 answer in {LISTING_ATTEMPTS} attempts ({problem})")


def _listed_prefixes(cfg: dict, mirror, prefix: str) -> Iterator[str]:
    """The CommonPrefixes ('folders') under `prefix`, page by page (continuation tokens). A token that comes
    back a second time would list the same pages forever: an error naming the page."""
    base, token, seen = cfg["bucket_url"].rstrip("/"), None, set()
    while True:
        query = {"list-type": "2", "prefix": prefix, "delimiter": "/", "max-keys": str(cfg["page_size"])}
        if token:
            query["continuation-token"] = token
        url = f"{base}/?{urllib.parse.urlencode(query)}"
        page = _listing_page(url, mirror)
        yield from (p.text or "" for p in page.iterfind("{*}CommonPrefixes/{*}Prefix"))
        token = page.findtext("{*}NextContinuationToken")
        if page.findtext("{*}IsTruncated") != "true" or not token:
            return
        if token in seen:
            raise ValueError(f"{url}: the listing gave a continuation token it gave before (page {len(seen) + 1}); "
                             "it would never end")
        seen.add(token)


def _listed_versions(cfg: dict, mirror) -> Iterator[tuple[int, int]]:
    for name in _listed_prefixes(cfg, mirror, cfg["prefix"]):
        if m := FOLDER.fullmatch(name):
            yield int(m[2]), int(m[3])


def _not_found(err: DownloadError) -> bool:
    return isinstance(err.__cause__, urllib.error.HTTPError) and err.__cause__.code == 404


def _inventory_manifest(cfg: dict, mirror, cache_dir: Path) -> tuple[str, bytes] | None:
    """(key, bytes) of the inventory manifest `cfg['inventory']` names: a dated folder, or 'latest', the newest
    folder that has a manifest (the newest may still be being written); None when 'latest' finds none."""
    root, base = cfg["inventory_prefix"].rstrip("/") + "/", cfg["bucket_url"].rstrip("/")
    if cfg["inventory"] == "latest":
        names = (name[len(root) :].rstrip("/") for name in _listed_prefixes(cfg, mirror, root))
        dates = sorted((name for name in names if DATED.fullmatch(name)), reverse=True)
    else:
        dates = [cfg["inventory"]]
    for date in dates:
        key = f"{root}{date}/manifest.json"
        try:
            return key, cached_bytes(f"{base}/{key}", cache_dir, mirror)
        except DownloadError as e:
            if cfg["inventory"] != "latest" or not _not_found(e):
                raise DownloadError(f"{cfg['key']}.inventory: {e}") from e
            log.warning("%s: no manifest yet; trying the inventory before it", key)
    return None


def _inventory_versions(manifest_key: str, manifest: bytes, cfg: dict, mirror, cache_dir: Path, rows: Counter
                        ) -> Iterator[tuple[int, int]]:
    """(id, version) of every article object the inventory's CSV files name (each checked against the manifest's
    md5). `rows` counts the rows read and those too short to hold the Key column (`rows_without_key`)."""
    base = cfg["bucket_url"].rstrip("/")
    try:
        spec = json.loads(manifest)
        fmt, schema = spec["fileFormat"], [c.strip() for c in spec["fileSchema"].split(",")]
        parts = [(f"{base}/{part['key']}", part.get("MD5checksum")) for part in spec["files"]]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{base}/{manifest_key}: not an S3 inventory manifest ({type(e).__name__}: {e})") from None
    if fmt != "CSV" or "Key" not in schema:
        raise ValueError(f"{base}/{manifest_key}: expected a CSV inventory with a Key column, got {fmt!r} with {schema}")
    column = schema.index("Key")
    for url, md5 in parts:
        data = cached_bytes(url, cache_dir, mirror, "md5", md5)
        try:
            with gzip.open(io.BytesIO(data), "rt", encoding="utf-8", newline="") as lines:
                for row in csv.reader(lines):
                    rows["rows"] += 1
                    if len(row) <= column:
                        rows["rows_without_key"] += 1
                        continue
                    m = INVENTORY_KEY.fullmatch(urllib.parse.unquote(row[column]))  # S3 URL-encodes keys
                    if m and m[1].startswith(cfg["prefix"]):
                        yield int(m[2]), int(m[3])
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as e:  # not gzip, cut short, not CSV
            raise ValueError(f"{url}: not a gzipped CSV inventory part ({type(e).__name__}: {e})") from None


@dataclass
class Candidates:
    """Every candidate article in subset order; iterating gives ('PMC<id>', [versions, ascending])."""

    ids: np.ndarray  # numeric PMCIDs, ascending
    starts: np.ndarray  # versions[starts[i]:starts[i + 1]] are the versions of ids[i]
    versions: np.ndarray
    order: np.ndarray  # indexes into ids, in subset order
    provenance: dict = field(default_factory=dict)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, int]], key: str, provenance: dict) -> Candidates:
        # (id, version) packed in one uint64: the real bucket's millions of versions take a few hundred MB here,
        # several times that as Python tuples
        packed = array("Q", (pmc << 32 | version for pmc, version in pairs))
        unique = np.unique(np.frombuffer(packed, dtype=np.uint64))  # by id, then version; repeats gone
        ids, starts = np.unique(unique >> np.uint64(32), return_index=True)
        ranks = np.fromiter((subset_rank(f"PMC{i}", key) for i in ids.tolist()), dtype=np.uint64, count=len(ids))
        counts = {"articles": len(ids), "versions": len(unique)}
        return cls(ids, np.append(starts, len(unique)), unique & np.uint64(0xFFFFFFFF), np.lexsort((ids, ranks)),
                   provenance | counts)

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[tuple[str, list[int]]]:
        for i in self.order.tolist():
            yield f"PMC{self.ids[i]}", self.versions[self.starts[i] : self.starts[i + 1]].tolist()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def find_candidates(cfg: dict, mirror, cache_dir: Path) -> Candidates:
    """The source's candidate articles in subset order, from the inventory or a listing (module docstring)."""
    manifest = None if cfg["inventory"] is None else _inventory_manifest(cfg, mirror, cache_dir)
    if manifest is not None:
        key, data = manifest
        provenance = {"from": "inventory", "key": key, "sha256": hashlib.sha256(data).hexdigest()}
        rows = Counter()
        candidates = Candidates.from_pairs(_inventory_versions(key, data, cfg, mirror, cache_dir, rows),
                                           cfg["subset_key"], provenance)
        candidates.provenance["rows_without_key"] = rows["rows_without_key"]
        if rows["rows_without_key"] > MAX_ROWS_WITHOUT_KEY * rows["rows"]:
            raise ValueError(f"{cfg['bucket_url'].rstrip('/')}/{key}: {rows['rows_without_key']} of the inventory's "
                             f"{rows['rows']} rows have no Key column (more than {MAX_ROWS_WITHOUT_KEY:.0%}): it is "
                             f"damaged; pin another ({cfg['key']}.inventory) or list the bucket (inventory: null)")
    else:
        if cfg["inventory"] is not None:
            log.warning("%s: no inventory under %s; listing the whole bucket instead", cfg["key"], cfg["inventory_prefix"])
        provenance = {"from": "listing", "started": _now()}
        candidates = Candidates.from_pairs(_listed_versions(cfg, mirror), cfg["subset_key"], provenance)
        candidates.provenance["finished"] = _now()
    if not len(candidates):
        raise ValueError(f"{cfg['key']}: no article under prefix {cfg['prefix']!r} ({candidates.provenance})")
    log.info("%s: %d candidate articles (%s)", cfg["key"], len(candidates), candidates.provenance)
    return candidates


# ----------------------------------------------------------------------------- one article


def _failure(meta: dict, allowed: set[str]) -> str | None:
    """Why this version may not be taken, or None when it may."""
    retracted, open_access = flag(meta["is_retracted"]), flag(meta["is_pmc_openaccess"])
    if retracted is None:
        return "excluded_retracted_unknown"
    if retracted:
        return "excluded_retracted"
    if open_access is None:
        return "excluded_openaccess_unknown"
    if not open_access:
        return "excluded_not_openaccess"
    if meta[LICENSE] is None or norm_license(meta[LICENSE]) not in allowed:
        return "excluded_license"
    return None


def choose_version(metas: dict[int, dict], licenses: Iterable[str]) -> tuple[str, int | None]:
    """('kept', version) or (why the article is left out, None), by the rule of the module docstring."""
    if any(flag(meta["is_retracted"]) for meta in metas.values()):  # a retraction is of the work, not one version
        return "excluded_retracted", None
    allowed = {norm_license(x) for x in licenses}
    ranked = sorted(metas, key=lambda v: (MANUSCRIPT_RANK[flag(metas[v]["is_manuscript"])], -v))
    failures = [_failure(metas[v], allowed) for v in ranked]
    for version, failure in zip(ranked, failures):
        if failure is None:
            return "kept", version
    return failures[0], None


@dataclass
class Article:
    pmcid: str
    reason: str  # 'kept', or why the article is left out
    metadata: list[dict]  # every version's metadata that was read
    version: str | None = None  # 'PMC<id>.<version>' taken
    url: str | None = None
    data: bytes | None = None  # its JATS XML
    license: str | None = None
    is_manuscript: bool | None = None


def _metadata(name: str, cfg: dict, mirror, cache_dir: Path, refresh: bool) -> dict:
    """One version's metadata: a ValueError naming its URL (so the article) when it is not JSON, lacks a field
    or has a field of the wrong type (the flags: yes/no values or null; licence and xml_url: strings or null)."""
    url = f"{cfg['bucket_url'].rstrip('/')}/{name}/{name}.json"
    try:
        meta = json.loads(cached_bytes(url, cache_dir, mirror, refresh=refresh))
    except json.JSONDecodeError as e:
        raise ValueError(f"{url}: metadata is not JSON ({e})") from None
    if not isinstance(meta, dict) or (missing := [f for f in (*FLAGS, LICENSE) if f not in meta]):
        raise ValueError(f"{url}: no field(s) {missing if isinstance(meta, dict) else list(FLAGS)} in the metadata")
    types = {**dict.fromkeys(FLAGS, (bool, int, str)), LICENSE: str, "xml_url": str}
    if wrong := {f: type(meta[f]).__name__ for f, t in types.items() if meta.get(f) is not None and not isinstance(meta[f], t)}:
        raise ValueError(f"{url}: metadata field(s) of the wrong type: {wrong}")
    return meta


def _read_article(pmcid: str, versions: list[int], cfg: dict, mirror, cache_dir: Path, refresh: bool) -> Article:
    metas = {v: _metadata(f"{pmcid}.{v}", cfg, mirror, cache_dir, refresh) for v in versions}
    reason, chosen = choose_version(metas, cfg["licenses"])
    if chosen is None:
        return Article(pmcid, reason, list(metas.values()))
    name, meta = f"{pmcid}.{chosen}", metas[chosen]
    href = meta.get("xml_url", f"{name}/{name}.xml")
    if not href:
        return Article(pmcid, "no_xml", list(metas.values()), name)
    parts = urllib.parse.urlsplit(href)  # s3://bucket/KEY?md5=..., https://host/KEY or a bare KEY
    key = parts.path.lstrip("/") if parts.scheme else parts.path
    md5 = urllib.parse.parse_qs(parts.query).get("md5", [None])[0]
    url = f"{cfg['bucket_url'].rstrip('/')}/{key}"
    data = cached_bytes(url, cache_dir, mirror, "md5", md5)
    return Article(pmcid, "kept", list(metas.values()), name, url, data, str(meta[LICENSE]), flag(meta["is_manuscript"]))


def fetch_article(pmcid: str, versions: list[int], cfg: dict, mirror, cache_dir: Path) -> Article:
    """Read the metadata of every version (cached), choose one, fetch its XML (cached, md5-checked). An md5
    mismatch reads the metadata again, once. Raises ValueError on bad metadata or a mismatch that stays,
    DownloadError on a failed download."""
    try:
        return _read_article(pmcid, versions, cfg, mirror, cache_dir, refresh=False)
    except DigestMismatch as e:
        log.warning("%s; reading %s's metadata again", e, pmcid)
        return _read_article(pmcid, versions, cfg, mirror, cache_dir, refresh=True)
