"""The pmc corpus source (edad_core.pmc through edad_core.corpus) on a fake PMC Cloud Service bucket served over
HTTP (tests/pmc_bucket.py): a subset that follows the population's PMCIDs and that the key fixes, the inventory
or listing it came from, version choice, flag, notice and licence filters, and a live bucket's troubles (updated
objects, pages cut short, long continuation tokens)."""

import gzip
import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from pmc_bucket import (INVENTORY, article_xml, gzipped_rows, make_population, meta, part_path, part_rows,
                        replace_part, serve, write_bucket, write_version)
from scipy.stats import ks_2samp

from edad_core.corpus import DEFAULTS, build_corpus, check_sources
from edad_core.download import DownloadError, mirror_path
from edad_core.pmc import choose_version, subset_rank

PROJECT = Path(__file__).resolve().parents[1]
KEY = DEFAULTS["pmc"]["subset_key"]
MANUSCRIPT = {True: "true", False: "false", None: "unknown"}


@pytest.fixture(scope="module")
def population():
    return make_population()


@pytest.fixture
def bucket(tmp_path, population, monkeypatch):
    monkeypatch.delenv("EDAD_MIRROR", raising=False)
    monkeypatch.setattr("edad_core.pmc.LISTING_BACKOFF", 0.0)
    write_bucket(tmp_path / "bucket", population)
    with serve(tmp_path / "bucket") as server:
        yield server


def _source(server, **extra) -> dict:
    return {"kind": "pmc", "bucket_url": server.url, "concurrency": 4, **extra}


def _build(source: dict, out: Path, cache: Path, n_tokens=None, **options) -> dict:
    return build_corpus([source], out / "corpus.txt", out / "stats.json", out / "manifest.tsv", n_tokens=n_tokens,
                        cache_dir=cache, **options)


def _rows(out: Path) -> list[list[str]]:
    return [row.split("\t") for row in (out / "manifest.tsv").read_text().splitlines()[1:]]


def _report(stats: dict) -> dict:
    return stats["pmc"]["corpus.sources[0]"]


def _in_subset_order(articles, key=KEY):
    return sorted(articles, key=lambda a: subset_rank(a.pmcid, key))


def _outcomes(report: dict) -> Counter:
    """What became of the articles read, one reason each (kept_manuscript is a part of kept)."""
    return Counter({reason: n for reason, n in report["articles"].items() if reason != "kept_manuscript"})


# ----------------------------------------------------------------------------- the subset


def test_the_subset_follows_the_population_and_the_key_fixes_it(bucket, population, tmp_path):
    eligible = [a for a in population if a.expect == "kept"]
    n_tokens = sum(len(s.split()) for a in eligible for s in a.sentences) // 10
    stats = _build(_source(bucket), tmp_path / "a", tmp_path / "cache", n_tokens)
    subset = [int(row[1].split(".")[0][3:]) for row in _rows(tmp_path / "a")]
    everyone = [a.number for a in eligible]
    assert 25 <= len(subset) <= 50
    assert ks_2samp(subset, everyone).pvalue > 0.2
    # the test can see the flaw it guards against: what S3 key order took ("PMC10...", "PMC100..." first) fails it
    key_order = sorted(everyone, key=lambda i: f"PMC{i}")[: len(subset)]
    assert ks_2samp(key_order, everyone).pvalue < 1e-6

    # the articles read are the first in keyed-hash order, each with what the fixture says must become of it
    report = _report(stats)
    read = _in_subset_order(population)[: _outcomes(report).total()]
    assert _outcomes(report) == Counter(a.expect for a in read)
    assert [row[1] for row in _rows(tmp_path / "a")] == [f"{a.pmcid}.{a.expect_version}" for a in read if a.expect == "kept"]
    manifest = bucket.root / INVENTORY / "2026-05-01T01-00Z" / "manifest.json"  # the newest with a manifest
    assert report["candidates"] == {"from": "inventory", "key": f"{INVENTORY}2026-05-01T01-00Z/manifest.json",
                                    "sha256": hashlib.sha256(manifest.read_bytes()).hexdigest(),
                                    "articles": 400, "versions": sum(len(a.versions) for a in population),
                                    "rows_without_key": 0}

    # the same inventory and key: the same corpus, and from the cache: nothing of what was read is fetched again
    bucket.requests.clear()
    assert _build(_source(bucket), tmp_path / "again", tmp_path / "cache", n_tokens)["sha256"] == stats["sha256"]
    fetched = {r.split("/")[1] for r in bucket.requests}
    assert bucket.requests[0].startswith("/?") and fetched.isdisjoint(f"{a.pmcid}.{v}" for a in read for v in a.versions)
    assert not any("/data/" in r or r.endswith("2026-05-01T01-00Z/manifest.json") for r in bucket.requests)
    # the same candidates from a full listing: the same corpus again
    listed = _build(_source(bucket, inventory=None), tmp_path / "listed", tmp_path / "cache2", n_tokens)
    assert listed["sha256"] == stats["sha256"]
    assert _report(listed)["candidates"].keys() == {"from", "started", "finished", "articles", "versions"}
    assert _report(listed)["candidates"]["from"] == "listing" and _report(listed)["candidates"]["articles"] == 400
    # another key: another subset
    other = _build(_source(bucket, subset_key="another key"), tmp_path / "other", tmp_path / "cache", n_tokens)
    assert other["sha256"] != stats["sha256"]
    assert len({r[1] for r in _rows(tmp_path / "other")} & {r[1] for r in _rows(tmp_path / "a")}) < len(subset) // 2


def test_versions_flags_notices_and_licences_over_the_whole_bucket(bucket, population, tmp_path):
    stats = _build(_source(bucket), tmp_path / "out", tmp_path / "cache", max_bad_fraction=0.0)
    report = _report(stats)
    assert report["articles"] == Counter(a.expect for a in population) + Counter(kept_manuscript=3)
    rows = {row[1].split(".")[0]: row for row in _rows(tmp_path / "out")}
    kept = [a for a in population if a.expect == "kept"]
    assert rows.keys() == {a.pmcid for a in kept}
    for a in kept:
        flags, row = a.versions[a.expect_version], rows[a.pmcid]
        assert (row[1], row[4], row[5]) == (f"{a.pmcid}.{a.expect_version}", flags["license_code"],
                                            MANUSCRIPT[flags["is_manuscript"]]), a.case
    assert report["licenses_kept"] == Counter(a.versions[a.expect_version]["license_code"] for a in kept)
    assert report["licenses_kept"].keys() == {"CC BY", "CC0", "CC BY-SA", "CC BY-ND"}
    assert report["article_types_left_out"] == {"correction": 3, "retraction": 3, "expression-of-concern": 3}
    assert report["metadata_values"] == {"is_retracted": {"null": 3, "unknown": 3}, "is_pmc_openaccess": {"null": 3},
                                         "is_manuscript": {"null": 3}, "license_code": {"null": 3}}
    text = (tmp_path / "out" / "corpus.txt").read_text()
    assert "is a correction article" not in text and "is a manuscript only allowed article" in text
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["pmc"] == stats["pmc"]

    again = _build(_source(bucket, max_articles=5), tmp_path / "five", tmp_path / "cache")
    assert again["documents"] == 5 == _report(again)["articles"]["kept"]


def _m(license="CC BY", **flags) -> dict:
    flags = meta(license, **flags)
    del flags["xml"]
    return flags


@pytest.mark.parametrize("metas, expected", [
    ({1: _m(manuscript=True), 2: _m()}, ("kept", 2)),
    ({1: _m(), 2: _m(manuscript=True)}, ("kept", 1)),  # the published version, though older
    ({1: _m(), 2: _m()}, ("kept", 2)),  # the newest of equals
    ({1: _m(manuscript=True), 2: _m("CC BY-NC")}, ("kept", 1)),  # a manuscript when no published version may be taken
    ({1: _m(manuscript=True), 2: _m(manuscript=None)}, ("kept", 2)),  # an unknown flag before a manuscript
    ({1: _m(manuscript=True), 2: _m(open_access=None)}, ("kept", 1)),
    ({1: _m(manuscript=True), 2: _m(retracted=True)}, ("excluded_retracted", None)),  # a retraction is of the work
    ({1: _m(retracted=None)}, ("excluded_retracted_unknown", None)),
    ({1: _m(retracted="pending")}, ("excluded_retracted_unknown", None)),
    ({1: _m(retracted="no", open_access="yes")}, ("kept", 1)),  # yes/no strings are flags too
    ({1: _m(open_access=False)}, ("excluded_not_openaccess", None)),
    ({1: _m(open_access=None)}, ("excluded_openaccess_unknown", None)),
    ({1: _m(None)}, ("excluded_license", None)),
    ({1: _m("CC BY-NC"), 2: _m(manuscript=True, retracted=None)}, ("excluded_license", None)),  # the first-ranked's reason
])
def test_version_choice_on_crafted_metadata(metas, expected):
    assert choose_version(metas, DEFAULTS["pmc"]["licenses"]) == expected


@pytest.mark.parametrize("code, taken", [
    ("CC0", True), ("CC BY", True), ("cc-by", True), ("CC BY-SA", True), ("CC BY-ND", True), ("CC BY-NC", False),
    ("CC BY-NC-SA", False), ("CC BY-NC-ND", False), ("other", False), (None, False),
])
def test_the_default_licences_are_the_commercial_use_ones(code, taken):
    assert choose_version({1: _m(code)}, DEFAULTS["pmc"]["licenses"]) == (("kept", 1) if taken else ("excluded_license", None))


def test_a_metadata_file_without_a_flag_is_a_bad_document(bucket, population, tmp_path):
    first = next(a for a in _in_subset_order(population) if a.expect == "kept")
    name = f"{first.pmcid}.{first.expect_version}"
    data = json.loads((bucket.root / name / f"{name}.json").read_text())
    del data["is_manuscript"]
    (bucket.root / name / f"{name}.json").write_text(json.dumps(data))
    stats = _build(_source(bucket, max_articles=3), tmp_path / "out", tmp_path / "cache", max_bad_fraction=0.5)
    assert stats["bad_documents"] == 1 and stats["bad_examples"][0]["id"] == first.pmcid
    assert "no field(s) ['is_manuscript'] in the metadata" in stats["bad_examples"][0]["error"]


@pytest.mark.parametrize("field, value", [("xml_url", 12345), ("xml_url", ["s3://x"]), ("license_code", {"CC": "BY"}),
                                          ("is_retracted", [False])])
def test_a_metadata_field_of_the_wrong_type_is_a_bad_document_named(bucket, population, tmp_path, field, value):
    first = next(a for a in _in_subset_order(population) if a.expect == "kept")
    name = f"{first.pmcid}.{first.expect_version}"
    data = json.loads((bucket.root / name / f"{name}.json").read_text())
    data[field] = value
    (bucket.root / name / f"{name}.json").write_text(json.dumps(data))
    stats = _build(_source(bucket, max_articles=3), tmp_path / "out", tmp_path / "cache", max_bad_fraction=0.5)
    assert stats["bad_documents"] == 1 and stats["bad_examples"][0]["id"] == first.pmcid
    assert f"{name}.json: metadata field(s) of the wrong type: {{'{field}': '{type(value).__name__}'}}" in stats["bad_examples"][0]["error"]


# ----------------------------------------------------------------------------- a live bucket


def test_an_md5_mismatch_heals_after_the_metadata_is_refreshed(bucket, population, tmp_path):
    updated, broken = [a for a in _in_subset_order(population) if a.case == "plain"][:2]
    source = _source(bucket, max_articles=4)
    _build(source, tmp_path / "first", tmp_path / "cache")
    names = [f"{a.pmcid}.1" for a in (updated, broken)]
    # NCBI updates `updated` after the first run: new XML, new md5 in its metadata. The rerun's cache holds the
    # old metadata but not the XML (as when a run stops between the two).
    write_version(bucket.root, updated, 1, article_xml(updated, 1, ["Updated text of the article."]))
    # `broken` stays bad: its XML no longer matches even the refreshed metadata
    write_version(bucket.root, broken, 1, article_xml(broken, 1, ["Tampered."]), hashlib.md5(article_xml(broken, 1)).hexdigest())
    for name in names:
        mirror_path(f"{bucket.url}/{name}/{name}.xml", tmp_path / "cache").unlink()
    bucket.requests.clear()
    stats = _build(source, tmp_path / "second", tmp_path / "cache", max_bad_fraction=0.5)
    assert "Updated text of the article." in (tmp_path / "second" / "corpus.txt").read_text()
    assert stats["bad_documents"] == 1 and stats["bad_examples"][0]["id"] == broken.pmcid
    assert f"{names[1]}.xml: md5 mismatch" in stats["bad_examples"][0]["error"]
    for name in names:  # the metadata read again once, the XML fetched before and after
        assert bucket.requests.count(f"/{name}/{name}.json") == 1 and bucket.requests.count(f"/{name}/{name}.xml") == 2
    with pytest.raises(ValueError, match=rf"1 of \d+ documents could not be read.*{broken.pmcid}"):
        _build(source, tmp_path / "third", tmp_path / "cache", max_bad_fraction=0.0)


def test_long_continuation_tokens_and_listing_pages_cut_short(bucket, tmp_path):
    (tmp_path / "mirror").mkdir()  # every listing URL is looked up in a mirror first
    bucket.token_padding, bucket.cut_listings = 4000, {2}
    stats = _build(_source(bucket, inventory=None, max_articles=3), tmp_path / "out", tmp_path / "cache",
                   mirror=tmp_path / "mirror")
    assert stats["documents"] == 3 and _report(stats)["candidates"]["articles"] == 400
    listings = [r for r in bucket.requests if r.startswith("/?")]
    assert len(listings) == 9 + 1 and listings[1] == listings[2]  # 401 folders and objects in pages of 50; one again
    assert min(len(r) for r in listings[1:]) > 4000
    bucket.cut_listings = {12, 13, 14}  # one page cut short every time: the build stops, naming it
    with pytest.raises(ValueError, match=r"/\?list-type=2.*: not an S3 ListObjectsV2 answer in 3 attempts"):
        _build(_source(bucket, inventory=None), tmp_path / "out", tmp_path / "cache", mirror=tmp_path / "mirror")


def test_a_pinned_inventory_a_missing_one_and_none(bucket, tmp_path, caplog):
    stats = _build(_source(bucket, inventory="2026-04-30T01-00Z", max_articles=2), tmp_path / "a", tmp_path / "cache")
    assert _report(stats)["candidates"]["key"] == f"{INVENTORY}2026-04-30T01-00Z/manifest.json"
    assert _report(stats)["candidates"]["articles"] == 380
    with pytest.raises(DownloadError, match=r"corpus\.sources\[0\]\.inventory: .*2026-01-01T00-00Z/manifest\.json: HTTP 404"):
        _build(_source(bucket, inventory="2026-01-01T00-00Z"), tmp_path / "b", tmp_path / "cache")
    shutil.rmtree(bucket.root / "inventory-reports")
    stats = _build(_source(bucket, max_articles=2), tmp_path / "c", tmp_path / "cache")
    assert _report(stats)["candidates"]["from"] == "listing" and "no inventory under" in caplog.text


def test_a_broken_inventory_stops_the_build_naming_it(bucket, tmp_path):
    part = bucket.root / INVENTORY / "data" / "2026-05-01T01-00Z-part1.csv.gz"
    part.write_bytes(part.read_bytes()[:-10])  # cut short: its md5 is not the manifest's
    with pytest.raises(ValueError, match=r"2026-05-01T01-00Z-part1\.csv\.gz: md5 mismatch"):
        _build(_source(bucket), tmp_path / "a", tmp_path / "cache1")
    manifest = bucket.root / INVENTORY / "2026-05-01T01-00Z" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"CSV"', '"Parquet"'))
    with pytest.raises(ValueError, match=r"2026-05-01T01-00Z/manifest\.json: expected a CSV inventory with a Key column"):
        _build(_source(bucket), tmp_path / "b", tmp_path / "cache2")
    manifest.write_text("{not json")
    with pytest.raises(ValueError, match=r"2026-05-01T01-00Z/manifest\.json: not an S3 inventory manifest"):
        _build(_source(bucket), tmp_path / "c", tmp_path / "cache3")


def test_corpus_exclude_takes_out_an_article_or_one_version(bucket, population, tmp_path):
    plain = next(a for a in population if a.case == "plain")
    switched = next(a for a in population if a.case == "manuscript_then_published")
    stats = _build(_source(bucket), tmp_path / "out", tmp_path / "cache", exclude=[plain.pmcid, f"{switched.pmcid}.2"])
    rows = {row[1].split(".")[0]: row for row in _rows(tmp_path / "out")}
    assert plain.pmcid not in rows and stats["excluded_documents"] == _report(stats)["articles"]["excluded"] == 1
    assert rows[switched.pmcid][1] == f"{switched.pmcid}.1" and rows[switched.pmcid][5] == "true"  # the manuscript


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("change, message", [
    ({"inventory": "yesterday"}, r"\.inventory: expected 'latest', a dated inventory folder"),
    ({"subset_key": ""}, r"\.subset_key: expected a string of 1 to 64 bytes"),
    ({"subset_key": "k" * 65}, r"\.subset_key: expected a string of 1 to 64 bytes"),
    ({"page_size": 1001}, r"\.page_size: S3 returns at most 1000 keys per page"),
    ({"concurrency": None}, r"\.concurrency: expected a positive integer, got None"),
    ({"exclude_article_types": "correction"}, r"\.exclude_article_types: expected a list of strings"),
    ({"prefix": None}, r"\.prefix: expected a string, got None"),
])
def test_bad_pmc_settings_name_their_key(change, message):
    with pytest.raises(ValueError, match=r"corpus\.sources\[0\]" + message):
        check_sources([{"kind": "pmc", **change}])


def test_the_paper_config_states_every_default():
    paper = yaml.safe_load((PROJECT / "config.yaml").read_text())["corpus"]["sources"]
    assert [{k: v for k, v in s.items() if k != "kind"} for s in paper if s["kind"] == "pmc"] == [DEFAULTS["pmc"]]


@pytest.mark.parametrize("damage", ["not gzip", "cut short", "not UTF-8"])
def test_an_inventory_part_that_cannot_be_read_stops_the_build_naming_its_url(bucket, tmp_path, damage):
    data = part_path(bucket.root, "2026-05-01T01-00Z", 1).read_bytes()
    data = {"not gzip": b"<Error><Code>AccessDenied</Code></Error>", "cut short": data[: len(data) // 2],
            "not UTF-8": gzip.compress(b'"pmc-oa-opendata","metadata/PMC1\xff.1.json","512"\n')}[damage]
    replace_part(bucket.root, "2026-05-01T01-00Z", 1, data)  # the manifest's md5 is that of the damaged part
    with pytest.raises(ValueError, match=rf"{bucket.url}/{INVENTORY}data/2026-05-01T01-00Z-part1\.csv\.gz: "
                                         r"not a gzipped CSV inventory part"):
        _build(_source(bucket), tmp_path / "out", tmp_path / "cache")


def test_inventory_rows_without_a_key_are_counted_and_too_many_stop_the_build(bucket, population, tmp_path):
    date = "2026-05-01T01-00Z"
    rows = part_rows(bucket.root, date, 0)
    short = [i for i, row in enumerate(rows) if row[1].startswith("metadata/PMC")]
    for i in short[:2]:  # 2 of about 450 rows lose their Key column: counted, and the rest is read
        rows[i] = rows[i][:1]
    replace_part(bucket.root, date, 0, gzipped_rows(rows))
    stats = _build(_source(bucket, max_articles=2), tmp_path / "a", tmp_path / "cache")
    candidates = _report(stats)["candidates"]
    assert candidates["rows_without_key"] == 2
    assert candidates["versions"] == sum(len(a.versions) for a in population) - 2
    assert json.loads((tmp_path / "a" / "stats.json").read_text())["pmc"]["corpus.sources[0]"]["candidates"] == candidates
    for i in short[2:17]:  # 17: more than 1% of them
        rows[i] = rows[i][:1]
    replace_part(bucket.root, date, 0, gzipped_rows(rows))
    with pytest.raises(ValueError, match=rf"{date}/manifest\.json: 17 of the inventory's \d+ rows have no Key column"):
        _build(_source(bucket, max_articles=2), tmp_path / "b", tmp_path / "cache2")


def test_a_listing_that_repeats_its_continuation_token_stops(bucket, tmp_path):
    bucket.stuck_listing = True
    with pytest.raises(ValueError, match=r"/\?.*continuation-token=.*: the listing gave a continuation token it "
                                         r"gave before \(page 2\)"):
        _build(_source(bucket, inventory=None, max_articles=2), tmp_path / "out", tmp_path / "cache")
    assert len([r for r in bucket.requests if r.startswith("/?")]) == 2  # the second page gave the first token again
