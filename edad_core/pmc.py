"""The PMC Open Access bucket client: which articles the bucket holds and the bytes of the ones a `pmc` corpus
source takes (edad_core.corpus turns them into documents).

    for article in list_articles(cfg, mirror):          # 'PMC<id>.<version>', key order, highest version
        reason, url, data, license = fetch_article(article, cfg, mirror, cache_dir)
        # reason 'kept' with the rendition's bytes, or why the article is left out (data None)

`cfg` is one checked `corpus.sources` entry of kind `pmc` (edad_core.corpus.check_sources).

Layout of the AWS open-data bucket ``pmc-oa-opendata`` (plain HTTPS, no credentials), checked against NCBI's
pages (pmc.ncbi.nlm.nih.gov/tools/pmcaws, the bucket's README.txt) and public code that reads it (2026): every
article version is a folder ``PMC<id>.<version>/`` at the bucket root holding ``PMC<id>.<version>.xml`` (JATS),
``.txt`` (plain text NCBI extracted from the XML), ``.pdf`` and ``.json`` (metadata; also at
``metadata/PMC<id>.<version>.json``). Metadata fields used: ``license_code`` ("CC BY", "CC0", "CC BY-NC", ...;
null for articles without a machine-readable licence), ``is_retracted`` (bool), and ``text_url`` / ``xml_url``
(``s3://pmc-oa-opendata/<key>?md5=<hex>``, null when that rendition does not exist); the legacy ``oa_comm/`` tree
moved to ``deprecated/`` in April 2026. The field names are configurable (``license_field``,
``retracted_field``); a metadata file without them is an error (a wrong name must not silently let retracted
articles in). Folders are listed with S3 ListObjectsV2 over HTTPS (``?list-type=2&prefix=PMC&delimiter=/``, paged
by continuation token), in key order; of several versions of one article only the highest is used. An article
is kept when its licence is in ``licenses`` (compared ignoring case, spaces and hyphens) and it is not retracted.
Its ``.txt`` (``format: txt``) or JATS ``.xml`` (``format: xml``) is checked against the metadata's md5 and
cached under ``cache_dir`` (laid out by URL): a rerun fetches only what is missing.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

from edad_core.download import cached_bytes, fetch_bytes

RENDITION_FIELD = {"txt": "text_url", "xml": "xml_url"}
ARTICLE = re.compile(r"(PMC\d+)\.(\d+)/$")


def norm_license(code) -> str:
    return re.sub(r"[\s_-]+", "", str(code)).upper()


def truthy(value) -> bool:
    return str(value).strip().lower() in ("true", "yes", "y", "1")


def list_articles(cfg: dict, mirror) -> Iterator[str]:
    """Article folders 'PMC<id>.<version>' in key order (ListObjectsV2 pages); the highest version per id."""
    base, token, last = cfg["bucket_url"].rstrip("/"), None, None
    while True:
        query = {"list-type": "2", "prefix": cfg["prefix"], "delimiter": "/", "max-keys": str(cfg["page_size"])}
        if token:
            query["continuation-token"] = token
        url = f"{base}/?{urllib.parse.urlencode(query)}"
        try:
            page = ET.fromstring(fetch_bytes(url, mirror=mirror))
        except ET.ParseError as e:
            raise ValueError(f"{url}: not an S3 ListObjectsV2 answer ({e})") from None
        for prefix in page.iterfind("{*}CommonPrefixes/{*}Prefix"):
            m = ARTICLE.fullmatch(prefix.text or "")
            if m is None:
                continue
            pmcid, version = m.group(1), int(m.group(2))
            if last is not None and last[0] != pmcid:
                yield f"{last[0]}.{last[1]}"
            last = (pmcid, max(version, last[1]) if last and last[0] == pmcid else version)
        token = page.findtext("{*}NextContinuationToken")
        if page.findtext("{*}IsTruncated") != "true" or not token:
            break
    if last is not None:
        yield f"{last[0]}.{last[1]}"


def fetch_article(article: str, cfg: dict, mirror, cache_dir: Path) -> tuple[str, str | None, bytes | None, str | None]:
    """(reason, url, bytes, licence) of one article folder: ('kept', url, data, licence) or
    ('excluded_license' | 'excluded_retracted' | 'no_rendition', None, None, None). Raises ValueError on bad
    metadata or an md5 mismatch, DownloadError on a failed download."""
    base = cfg["bucket_url"].rstrip("/")
    meta_url = f"{base}/{article}/{article}.json"
    try:
        meta = json.loads(cached_bytes(meta_url, cache_dir, mirror))
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_url}: metadata is not JSON ({e})") from None
    for field in ("license_field", "retracted_field"):
        if cfg[field] not in meta:
            raise ValueError(f"{meta_url}: no field {cfg[field]!r} ({cfg['key']}.{field}); fields: {sorted(meta)}")
    license = meta[cfg["license_field"]]
    if license is None or norm_license(license) not in {norm_license(x) for x in cfg["licenses"]}:
        return "excluded_license", None, None, None
    if truthy(meta[cfg["retracted_field"]]):
        return "excluded_retracted", None, None, None
    href = meta.get(RENDITION_FIELD[cfg["format"]], f"{article}/{article}.{cfg['format']}")
    if not href:
        return "no_rendition", None, None, None
    parts = urllib.parse.urlsplit(href)  # s3://bucket/KEY?md5=..., https://host/KEY or a bare KEY
    key = parts.path.lstrip("/") if parts.scheme else parts.path
    md5 = urllib.parse.parse_qs(parts.query).get("md5", [None])[0]
    url = f"{base}/{key}"
    return "kept", url, cached_bytes(url, cache_dir, mirror, "md5", md5), str(license)
