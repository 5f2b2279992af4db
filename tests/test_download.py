import hashlib
import json
import shutil
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

import edad_core
from edad_core.download import (
    TOKENIZER_FILES,
    DownloadError,
    fetch,
    fetch_bytes,
    mirror_path,
    mirror_root,
    resolve_model,
    sha256_file,
)

DATA = bytes(range(256)) * 5000  # 1.28 MB: several read chunks
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(autouse=True)
def _no_proxy_no_mirror(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "EDAD_MIRROR"):
        monkeypatch.delenv(var, raising=False)


class Server:
    """A real HTTP server on 127.0.0.1 serving `files`, with switchable misbehaviour."""

    def __init__(self, files, *, fail_first=0, fail_status=503, ranges=True, truncate_first=0, etags=True,
                 stall_first=0, changed=None, if_range=True, slow_first=0.0):
        self.files, self.fail_first, self.fail_status = files, fail_first, fail_status
        self.if_range = if_range  # False: a server that ignores If-Range (answers a Range with 206 regardless)
        self.slow_first = slow_first  # seconds before the first answer starts
        self.ranges, self.truncate_first, self.etags, self.stall_first = ranges, truncate_first, etags, stall_first
        self.changed = changed  # {path: new bytes} served from the second request on (an upstream update)
        self.requests = []  # (path, Range header, body bytes sent), as answered
        self.arrivals = []  # Range headers, as the requests arrived
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                """Keep test output quiet: no per-request lines on stderr."""

            def do_GET(self):
                rng = self.headers.get("Range")
                n = len(server.arrivals)
                server.arrivals.append(rng)
                if n == 0:
                    time.sleep(server.slow_first)
                if n < server.fail_first:
                    server.requests.append((self.path, rng, 0))
                    return self.send_error(server.fail_status)
                if server.changed and n >= 1:
                    server.files.update(server.changed)
                data = server.files.get(self.path)
                if data is None:
                    server.requests.append((self.path, rng, 0))
                    return self.send_error(404)
                start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and server.ranges else 0
                etag = f'"{hashlib.md5(data).hexdigest()}"'
                if server.if_range and self.headers.get("If-Range") not in (None, etag):
                    start = 0  # RFC 9110: the file changed, send all of it
                if start >= len(data) > 0:
                    server.requests.append((self.path, rng, 0))
                    return self.send_error(416)
                body = data[start:]
                self.send_response(206 if start else 200)
                if server.etags:
                    self.send_header("ETag", etag)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if n < server.fail_first + server.truncate_first + server.stall_first:
                    body = body[: len(body) // 3]  # then the connection closes early, or stalls
                self.wfile.write(body)
                if n < server.fail_first + server.stall_first:
                    self.wfile.flush()
                    time.sleep(1.5)
                server.requests.append((self.path, rng, len(body)))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url(path="/data/x.tsv"):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def put(mirror, url, data):
    p = mirror_path(url, mirror)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_mirror_layout(tmp_path):
    assert mirror_path("https://raw.example.org/a/b/c.tsv", tmp_path) == tmp_path / "raw.example.org/a/b/c.tsv"
    query = "list-type=2&prefix=PMC1"
    assert mirror_path(f"https://h.org/b/?{query}", tmp_path) == (
        tmp_path / "h.org/b" / f"query-{hashlib.sha256(query.encode()).hexdigest()}"
    )
    # an S3 continuation token can be longer than a file name may be: the query never becomes a name itself
    long_query = "continuation-token=" + "x/y%2F.." * 1000
    path = mirror_path(f"https://h.org/?{long_query}", tmp_path)
    assert path.parent == tmp_path / "h.org" and len(path.name) == 70 and not path.is_file()
    with pytest.raises(DownloadError, match=r"'\.\.'"):
        mirror_path("https://h.org/a/../../etc/passwd", tmp_path)
    with pytest.raises(DownloadError, match="not an http"):
        mirror_path("ftp://h.org/a", tmp_path)


def test_mirror_root(tmp_path, monkeypatch, caplog):
    assert mirror_root(None) is None and mirror_root("") is None
    monkeypatch.setenv("EDAD_MIRROR", str(tmp_path))
    assert mirror_root(None) == tmp_path.resolve()
    assert mirror_root(tmp_path / "..") == tmp_path.parent.resolve()  # the argument wins over the env
    for _ in range(3):
        assert mirror_root(tmp_path / "missing") is None  # an absent mirror only means downloads
    notices = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert notices == [f"mirror folder {tmp_path / 'missing'} does not exist: files come from their URLs"]


def test_an_absent_mirror_falls_back_to_the_url(tmp_path):
    with Server({"/d/x.tsv": DATA}) as srv:
        dest = fetch(srv.url + "/d/x.tsv", tmp_path / "x.tsv", sha256=SHA, mirror=tmp_path / "absent", progress=False)
        assert fetch_bytes(srv.url + "/d/x.tsv", mirror=tmp_path / "absent") == DATA
    assert dest.read_bytes() == DATA and [r[0] for r in srv.requests] == ["/d/x.tsv", "/d/x.tsv"]


@pytest.mark.parametrize("variable", ["EDAD_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_a_missing_file_is_an_error_naming_url_and_mirror_path(tmp_path, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    mirror = tmp_path / "mirror"
    with Server({"/d/x.tsv": DATA, "/d/y.tsv": DATA}) as srv:
        put(mirror, srv.url + "/d/y.tsv", DATA)
        assert fetch(srv.url + "/d/y.tsv", tmp_path / "y.tsv", mirror=mirror, progress=False).read_bytes() == DATA
        for get in (lambda: fetch(srv.url + "/d/x.tsv", tmp_path / "x.tsv", mirror=mirror, progress=False),
                    lambda: fetch_bytes(srv.url + "/d/x.tsv", mirror=mirror)):
            with pytest.raises(DownloadError) as e:
                get()
            assert f"{srv.url}/d/x.tsv: EDAD_OFFLINE/HF_HUB_OFFLINE is set" in str(e.value)
            assert f"put it at {mirror_path(srv.url + '/d/x.tsv', mirror)}" in str(e.value)
        with pytest.raises(DownloadError, match=r"no mirror set.*put it at <mirror>/127\.0\.0\.1:\d+/d/x\.tsv"):
            fetch_bytes(srv.url + "/d/x.tsv")
    assert srv.requests == [] and not (tmp_path / "x.tsv").exists()  # the network was never asked


def test_fetch_from_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    url = closed_port_url("/d/train.tsv")  # the network would fail: the mirror must answer
    put(mirror, url, DATA)
    dest = fetch(url, tmp_path / "out" / "train.tsv", sha256=SHA, mirror=mirror, progress=False)
    assert dest.read_bytes() == DATA and sha256_file(dest) == SHA
    assert not (tmp_path / "out" / "train.tsv.part").exists()
    monkeypatch.setenv("EDAD_MIRROR", str(mirror))  # env fallback
    assert fetch(url, tmp_path / "env.tsv", retries=0).read_bytes() == DATA
    assert fetch_bytes(url) == DATA


def test_sha256_mismatch_mirror_and_http(tmp_path):
    mirror = tmp_path / "mirror"
    url = closed_port_url()
    put(mirror, url, DATA + b"x")
    dest = tmp_path / "x.tsv"
    with pytest.raises(DownloadError, match="sha256 mismatch") as e:
        fetch(url, dest, sha256=SHA, mirror=mirror, progress=False)
    assert str(mirror_path(url, mirror)) in str(e.value)
    assert not dest.exists() and not Path(str(dest) + ".part").exists()
    with Server({"/x.tsv": DATA + b"x"}) as srv:
        with pytest.raises(DownloadError, match="sha256 mismatch"):
            fetch(srv.url + "/x.tsv", dest, sha256=SHA, progress=False)
    assert not dest.exists() and not Path(str(dest) + ".part").exists()


def test_offline_not_mirrored_names_url_and_mirror_path(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    url = closed_port_url("/data/BC5CDR-IOB/train.tsv")
    with pytest.raises(DownloadError) as e:
        fetch(url, tmp_path / "t.tsv", mirror=mirror, retries=1, backoff=0, progress=False)
    assert url in str(e.value) and str(mirror / url.removeprefix("http://")) in str(e.value)  # HOST:PORT/PATH
    assert "2 attempts" in str(e.value)
    with pytest.raises(DownloadError, match="no mirror set"):
        fetch_bytes(url, retries=0)
    assert not (tmp_path / "t.tsv").exists()


def test_http_download_and_fetch_bytes(tmp_path):
    with Server({"/d/a.bin": DATA}) as srv:
        dest = fetch(srv.url + "/d/a.bin", tmp_path / "a.bin", sha256=SHA, progress=False)
        assert dest.read_bytes() == DATA
        assert fetch_bytes(srv.url + "/d/a.bin") == DATA
    assert [r[1] for r in srv.requests] == [None, None]


def test_http_retries_transient_errors(tmp_path):
    with Server({"/a": DATA}, fail_first=3) as srv:
        assert fetch(srv.url + "/a", tmp_path / "a", retries=3, backoff=0, progress=False).read_bytes() == DATA
    assert len(srv.requests) == 4
    with Server({"/a": DATA}, fail_first=2, fail_status=429) as srv:
        assert fetch_bytes(srv.url + "/a", retries=2, backoff=0) == DATA
    assert len(srv.requests) == 3
    with Server({"/a": DATA}, fail_first=3) as srv:
        with pytest.raises(DownloadError, match="3 attempts"):
            fetch(srv.url + "/a", tmp_path / "b", retries=2, backoff=0, progress=False)
    assert len(srv.requests) == 3 and not (tmp_path / "b").exists()


def test_http_final_error_is_not_retried(tmp_path):
    with Server({}) as srv:
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetch(srv.url + "/missing.tsv", tmp_path / "m", retries=5, backoff=0, progress=False)
    assert len(srv.requests) == 1


def started(dest: Path, data: bytes, validator: str | None = None) -> None:
    """A .part left by an earlier attempt, with the validator (ETag) that attempt stored."""
    Path(str(dest) + ".part").write_bytes(data)
    Path(str(dest) + ".part.validator").write_text(validator or f'"{hashlib.md5(DATA).hexdigest()}"')


def test_resume_partial_file_with_range(tmp_path):
    dest = tmp_path / "a.bin"
    started(dest, DATA[:1000])
    with Server({"/a.bin": DATA}) as srv:
        fetch(srv.url + "/a.bin", dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == DATA
    assert srv.requests == [("/a.bin", "bytes=1000-", len(DATA) - 1000)]  # only the rest was sent


def test_complete_part_answered_416_restarts(tmp_path):
    dest = tmp_path / "a.bin"
    started(dest, DATA)  # a run that died between download and rename
    with Server({"/a.bin": DATA}) as srv:
        fetch(srv.url + "/a.bin", dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == DATA
    assert srv.requests == [("/a.bin", f"bytes={len(DATA)}-", 0), ("/a.bin", None, len(DATA))]


def test_server_ignoring_range_restarts(tmp_path):
    dest = tmp_path / "a.bin"
    started(dest, b"stale bytes that must not stay in front")
    with Server({"/a.bin": DATA}, ranges=False) as srv:
        fetch(srv.url + "/a.bin", dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == DATA
    assert srv.requests[0][1].startswith("bytes=") and srv.requests[0][2] == len(DATA)


def test_truncated_response_is_resumed(tmp_path):
    with Server({"/a.bin": DATA}, truncate_first=1) as srv:
        dest = fetch(srv.url + "/a.bin", tmp_path / "a.bin", sha256=SHA, backoff=0, progress=False)
    assert dest.read_bytes() == DATA
    first = len(DATA) // 3
    assert srv.requests == [("/a.bin", None, first), ("/a.bin", f"bytes={first}-", len(DATA) - first)]


def test_resolve_model(tmp_path, monkeypatch):
    assert resolve_model("pkg:edad_core") == str(Path(edad_core.__file__).parent.resolve())
    assert resolve_model("pkg:json/decoder.py") == str(Path(json.decoder.__file__).resolve())
    with pytest.raises(DownloadError, match="not installed"):
        resolve_model("pkg:no_such_module_xyz/model")
    with pytest.raises(DownloadError, match="does not exist"):
        resolve_model("pkg:json/no_such_dir")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "m").mkdir(parents=True)
    assert resolve_model("models/m") == str(tmp_path.resolve() / "models" / "m")
    with pytest.raises(DownloadError, match="not a folder, a pkg: spec or a hub id"):
        resolve_model("no/such/folder")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("EDAD_OFFLINE", "1")
    with pytest.raises(DownloadError) as e:
        resolve_model("bert-base-uncased", tmp_path / "mirror")
    assert str(e.value).startswith("https://huggingface.co/bert-base-uncased/resolve/main/: EDAD_OFFLINE")
    assert f"put it at {tmp_path / 'mirror' / 'huggingface.co' / 'bert-base-uncased' / 'resolve' / 'main'}," in str(e.value)


def test_an_upstream_change_between_attempts_restarts_instead_of_splicing(tmp_path):
    new = bytes(reversed(DATA))
    with Server({"/a.bin": DATA}, truncate_first=1, changed={"/a.bin": new}) as srv:
        dest = fetch(srv.url + "/a.bin", tmp_path / "a.bin", backoff=0, progress=False)  # no pinned sha256
    assert dest.read_bytes() == new
    first = len(DATA) // 3
    assert srv.requests == [("/a.bin", None, first), ("/a.bin", f"bytes={first}-", len(new))]  # If-Range -> 200


def test_a_part_without_a_validator_is_not_continued(tmp_path):
    dest = tmp_path / "a.bin"
    Path(str(dest) + ".part").write_bytes(b"bytes of some older file")
    with Server({"/a.bin": DATA}, etags=False, truncate_first=1) as srv:
        fetch(srv.url + "/a.bin", dest, sha256=SHA, backoff=0, progress=False)
    assert dest.read_bytes() == DATA
    assert [r[1] for r in srv.requests] == [None, None]  # no ETag / Last-Modified: each attempt starts over


def test_a_stalled_transfer_keeps_what_arrived(tmp_path):
    with Server({"/a.bin": DATA}, stall_first=1) as srv:
        dest = fetch(srv.url + "/a.bin", tmp_path / "a.bin", sha256=SHA, backoff=0, timeout=0.5, progress=False)
    assert dest.read_bytes() == DATA
    assert srv.arrivals == [None, f"bytes={len(DATA) // 3}-"]  # the retry asked only for the rest


def test_concurrent_fetches_of_one_file_never_mix_bytes(tmp_path):
    with Server({"/a.bin": DATA}) as srv:
        threads = [threading.Thread(target=fetch, args=(srv.url + "/a.bin", tmp_path / "a.bin"),
                                    kwargs={"progress": False}) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert (tmp_path / "a.bin").read_bytes() == DATA
    assert not (tmp_path / "a.bin.part").exists()


@pytest.mark.parametrize("with_mirror", [False, True])
def test_local_files_are_copied_with_or_without_a_mirror(tmp_path, monkeypatch, with_mirror):
    if with_mirror:
        (tmp_path / "mirror").mkdir()
        monkeypatch.setenv("EDAD_MIRROR", str(tmp_path / "mirror"))
    (tmp_path / "doc.txt").write_bytes(DATA)
    for i, url in enumerate([str(tmp_path / "doc.txt"), (tmp_path / "doc.txt").as_uri()]):
        assert fetch(url, tmp_path / f"out{i}", sha256=SHA, progress=False).read_bytes() == DATA
        assert fetch_bytes(url) == DATA
    with pytest.raises(DownloadError, match=r"file:///no/such\.txt: no such local file"):
        fetch("file:///no/such.txt", tmp_path / "x", progress=False)


def test_a_206_of_a_changed_file_from_a_server_ignoring_if_range_is_not_spliced(tmp_path):
    new = bytes(reversed(DATA))
    with Server({"/a.bin": DATA}, truncate_first=1, changed={"/a.bin": new}, if_range=False) as srv:
        dest = fetch(srv.url + "/a.bin", tmp_path / "a.bin", backoff=0, progress=False)  # no pinned sha256
    assert dest.read_bytes() == new
    first = len(DATA) // 3
    assert srv.arrivals == [None, f"bytes={first}-", None]  # the 206 carried the new ETag: started over


def test_no_lock_file_is_left_beside_a_fetched_file(tmp_path):
    with Server({"/a.bin": DATA, "/b.bin": DATA[:10]}) as srv:
        fetch(srv.url + "/a.bin", tmp_path / "a.bin", progress=False)
        with pytest.raises(DownloadError):
            fetch(srv.url + "/missing.bin", tmp_path / "missing.bin", progress=False, retries=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_fetch_that_waited_for_another_of_the_same_file_takes_its_result(tmp_path):
    with Server({"/a.bin": DATA}, slow_first=1.0) as srv:  # the first download is still running when the rest ask
        threads = [threading.Thread(target=fetch, args=(srv.url + "/a.bin", tmp_path / "a.bin"),
                                    kwargs={"sha256": SHA, "progress": False}) for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.2)
        for t in threads:
            t.join()
    assert (tmp_path / "a.bin").read_bytes() == DATA
    assert srv.arrivals == [None]  # downloaded once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


class Hosts:
    """The internet in a folder: a local HTTP server answering for every host, `https://HOST/PATH` served from
    `root/HOST/PATH` (a mirror's layout). Hub files get the headers huggingface.co sends (commit, ETag, and
    X-Error-Code on a 404), so huggingface_hub downloads from it. `requests` lists (method, HOST/PATH) as asked."""

    def __init__(self, root: Path):
        self.requests = []
        hosts = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                """Quiet."""

            def send_head(self):
                hosts.requests.append((self.command, self.path.lstrip("/")))
                return super().send_head()

            def send_error(self, code, message=None, explain=None):
                self.error = code
                super().send_error(code, message, explain)

            def end_headers(self):
                if self.path.startswith("/huggingface.co/"):
                    if getattr(self, "error", None) == 404:
                        self.send_header("X-Error-Code", "EntryNotFound")
                    else:
                        self.send_header("X-Repo-Commit", "0" * 40)
                        self.send_header("ETag", '"' + hashlib.sha256(self.path.encode()).hexdigest() + '"')
                super().end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_the_demos_downloads_reach_the_network_only_for_files_missing_from_the_mirror(tmp_path, monkeypatch):
    """The demo's data (NER benchmarks, corpus articles) and two published checkpoints, every one of them on a local
    server standing in for its host; a mirror holds all but a few. Only those few are asked of the network."""
    from conftest import MIRROR, PROJECT, minilm_path

    from edad_core.corpus import build_corpus
    from edad_core.ner_data import benchmark_files, prepare_ner_dataset

    config = yaml.safe_load((PROJECT / "config.yaml").read_text())
    ner_urls = {d: benchmark_files(config["ner"]["base_url"], d, config["ner"]["splits"]) for d in config["ner"]["datasets"]}
    demo = [line.split()[0] for line in (PROJECT / "config" / "demo_corpus_urls.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    articles = [u for u in demo if mirror_path(u, MIRROR).is_file()][:4]  # a few of the demo's articles
    checkpoint = {"config.json": (minilm_path() / "config.json").read_bytes(), "vocab.txt": b"[PAD]\n[UNK]\nword\n",
                  "model.safetensors": DATA}  # the hub's files of a published checkpoint (no tokenizer files)
    hub_ids = [spec["hub"] for spec in config["models"]["published"].values()]  # BioBERT, SciBERT
    web, mirror = tmp_path / "web", tmp_path / "mirror"
    for url in [u for files in ner_urls.values() for u in files.values()] + articles:
        for root in (web, mirror):
            mirror_path(url, root).parent.mkdir(parents=True, exist_ok=True)
            mirror_path(url, root).symlink_to(mirror_path(url, MIRROR))
    for hub_id in hub_ids:
        for name, data in checkpoint.items():
            for root in (web, mirror):
                put(root, f"https://huggingface.co/{hub_id}/resolve/main/{name}", data)
    # what the mirror lacks: one NER split, one article, the second checkpoint
    missing = [ner_urls["NCBI-disease-IOB"]["devel"], articles[1]]
    for url in missing:
        mirror_path(url, mirror).unlink()
    shutil.rmtree(mirror / "huggingface.co" / hub_ids[1])

    def as_path(url: str) -> str:
        return url.split("://", 1)[1]

    with Hosts(web) as hosts:
        real_urlopen = urllib.request.urlopen

        def to_local_server(request, *args, **kwargs):
            local = request.full_url.replace("https://", hosts.url + "/", 1)
            return real_urlopen(urllib.request.Request(local, headers=dict(request.header_items())), *args, **kwargs)

        monkeypatch.setattr(urllib.request, "urlopen", to_local_server)
        monkeypatch.setenv("HF_ENDPOINT", hosts.url + "/huggingface.co")
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf_cache"))
        for dataset, files in ner_urls.items():
            prepare_ner_dataset(dataset, files=files, out_dir=tmp_path / "ner" / dataset, download_dir=tmp_path / "dl"
                                / dataset, mirror=mirror, max_sentences=5, progress=False)
        stats = build_corpus([{"kind": "urls", "urls": articles}], tmp_path / "c.txt", tmp_path / "s.json",
                             tmp_path / "m.tsv", n_tokens=None, mirror=mirror, cache_dir=tmp_path / "cache")
        folders = [Path(resolve_model(hub_id, mirror)) for hub_id in hub_ids]
    assert stats["documents"] == len(articles)
    assert folders[0] == mirror / "huggingface.co" / hub_ids[0] / "resolve" / "main"  # read in place
    for name, data in checkpoint.items():
        assert (folders[1] / name).read_bytes() == data  # downloaded into the Hugging Face cache
    assert (tmp_path / "dl" / "NCBI-disease-IOB" / "devel.tsv").read_bytes() == mirror_path(missing[0], MIRROR).read_bytes()
    hub_files = [f"huggingface.co/{hub_ids[1]}/resolve/main/{name}" for name in (*checkpoint, *TOKENIZER_FILES)]
    assert {path for _, path in hosts.requests} == {as_path(u) for u in missing} | set(hub_files)
    assert {(m, p) for m, p in hosts.requests if m == "GET"} == {("GET", p) for p in [*map(as_path, missing),
                                                                                      *hub_files[:3]]}
