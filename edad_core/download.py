"""Every download of the workflow goes through here: mirror folder first, then HTTPS with retries,
resume of partial files (only when the server proves, by ETag or Last-Modified in If-Range, that the file is
unchanged), sha256 verification, a lock per destination and an fsynced atomic rename. ``file://`` URLs and
bare local paths are copied, with or without a mirror.

    path = fetch(url, dest, sha256=expected, mirror=config.get("mirror"))   # a file, complete and verified
    data = cached_bytes(url, cache_dir, mirror)                            # bytes, cached by URL
    folder = resolve_model("dmis-lab/biobert-v1.1")   # a model's local folder: pkg:, folder, mirror, HF cache or hub

Mirror layout: the file behind ``https://HOST/PATH`` is ``MIRROR/HOST/PATH`` (HOST keeps a ``:PORT`` if the URL
has one). A URL with a query string (``https://HOST/PATH?QUERY``) is mirrored at
``MIRROR/HOST/PATH/query-<sha256 of QUERY>``, so listings such as ``?list-type=2&prefix=...`` can be mirrored too;
the query is hashed because it can be longer than a file name may be (an S3 continuation token) and holds
characters no file name should. The mirror is the ``mirror`` argument (config key ``mirror``), else the
environment variable ``EDAD_MIRROR``. Caches (`cached_bytes`) use the same layout.

The mirror only saves downloads: a file missing from it, or a mirror configured but absent (a one-line notice
names the folder), comes from its URL. With ``EDAD_OFFLINE`` or ``HF_HUB_OFFLINE`` set, nothing is downloaded:
a file missing from the mirror is an error naming its URL and its path in the mirror. Hub checkpoints follow the
same rule (`resolve_model`): the mirror's copy under ``huggingface.co/<id>/resolve/main/``, else the Hugging Face
cache, else the hub (into that cache); `local_model` is the no-network part, for planning.
"""

import contextlib
import functools
import hashlib
import http.client
import importlib.util
import logging
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from huggingface_hub import hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError, RemoteEntryNotFoundError
from huggingface_hub.utils import validate_repo_id
from tqdm import tqdm

from edad_core.files import atomic_write_text, fsync_dir, hold, sha256_file

log = logging.getLogger(__name__)

USER_AGENT = "edad-core/0.1 (+https://github.com/; research workflow)"
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}  # transient answers; any other HTTP error is final
CHUNK = 1 << 20
HUB = "https://huggingface.co"  # the mirror keeps hub files under this URL's layout, whatever HF_ENDPOINT says
CHECKPOINT_FILES = ("config.json", "vocab.txt")  # every checkpoint the workflow reads has these
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # and one of these
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")  # when the hub has them


class DownloadError(RuntimeError):
    """A URL that could not be fetched or verified, or a model spec that does not resolve."""


class DigestMismatch(ValueError):
    """Bytes that do not match the digest their source states (e.g. an md5 from metadata that is out of date)."""


class _Truncated(OSError):
    """The connection ended before Content-Length bytes arrived (retried, resuming)."""


def offline() -> bool:
    """EDAD_OFFLINE or HF_HUB_OFFLINE set (to anything but '', 0, false, no, off): nothing is downloaded."""
    return any(os.environ.get(v, "").strip().lower() not in ("", "0", "false", "no", "off")
               for v in ("EDAD_OFFLINE", "HF_HUB_OFFLINE"))


def configured_mirror(mirror: str | os.PathLike | None = None) -> Path | None:
    """The mirror folder asked for, present or not: explicit argument, else env EDAD_MIRROR ('' counts as unset)."""
    root = mirror if mirror not in (None, "") else os.environ.get("EDAD_MIRROR") or None
    return None if root is None else Path(root).expanduser().resolve()


@functools.cache
def _notice_missing(root: Path) -> None:
    log.warning("mirror folder %s does not exist: files come from their URLs", root)


def mirror_root(mirror: str | os.PathLike | None = None) -> Path | None:
    """The mirror folder when it exists (see `configured_mirror`), else None. The mirror only saves downloads:
    one configured but absent gets a one-line notice (once per process) and is passed over."""
    root = configured_mirror(mirror)
    if root is not None and not root.is_dir():
        _notice_missing(root)
        return None
    return root


def mirror_path(url: str, mirror: Path) -> Path:
    """Where `url` lives inside `mirror` (see the module docstring for the layout)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise DownloadError(f"not an http(s) URL: {url!r}")
    segments = [s for s in parts.path.split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise DownloadError(f"URL path has '.' or '..' segments: {url!r}")
    if parts.query:
        segments.append("query-" + hashlib.sha256(parts.query.encode()).hexdigest())
    return Path(mirror, parts.netloc, *segments)


def _check_sha256(path: Path, expected: str | None, what: str) -> None:
    if expected is None:
        return
    got = sha256_file(path)
    if got != expected.lower():
        path.unlink()
        raise DownloadError(f"sha256 mismatch for {what}: expected {expected}, got {got} (bad file removed)")


def _with_retries(url, attempt, *, retries: int, backoff: float, looked_for: str):
    """Run attempt() until it succeeds; transient errors are retried with exponential backoff."""
    last = None
    for i in range(retries + 1):
        try:
            return attempt()
        except urllib.error.HTTPError as e:
            if e.code not in RETRY_STATUS:
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; {looked_for}") from e
            last = e
        except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets, truncation
            last = e
        if i < retries:
            wait = min(backoff * 2**i, 60.0)
            log.warning("%s: %s; retry %d/%d in %.1f s", url, last, i + 1, retries, wait)
            time.sleep(wait)
    raise DownloadError(f"cannot download {url} ({retries + 1} attempts, last error: {last}); {looked_for}")


def _looked_for(url: str, root: Path | None) -> str:
    if root is None:
        return "no mirror set (config key `mirror` or env EDAD_MIRROR), so the network was the only source"
    return f"not in the mirror either (looked for {mirror_path(url, root)})"


def _offline_error(url: str, mirror, what: str = "the file is not in") -> DownloadError:
    """A file that only the network could give, asked for offline: name the URL and where the mirror would hold it."""
    root = configured_mirror(mirror)
    unset = "" if root else " (no mirror set: config key `mirror` or env EDAD_MIRROR)"
    return DownloadError(f"{url}: EDAD_OFFLINE/HF_HUB_OFFLINE is set and {what} the mirror{unset}; put it at "
                         f"{mirror_path(url, root or Path('<mirror>'))}, or unset them to download it")


def _request(url: str, start: int = 0, validator: str | None = None) -> urllib.request.Request:
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
        headers["If-Range"] = validator  # the server sends the rest only if the file is still the same
    return urllib.request.Request(url, headers=headers)


def _validator(headers) -> str | None:
    """What proves a later answer comes from the same file: a strong ETag, else Last-Modified (RFC 9110 If-Range)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def _download_to(url: str, part: Path, *, timeout: float, progress: bool) -> None:
    """One attempt: continue `part` from its current size (HTTP Range + If-Range with the validator stored when
    it was started) or start it over. A part whose file cannot be proven unchanged is never continued: not
    without a stored validator, and not by a 206 whose own ETag / Last-Modified differs from it (a server that
    ignores If-Range sends the rest of a newer file)."""
    validator_file = part.with_name(part.name + ".validator")
    start = part.stat().st_size if part.exists() else 0
    validator = validator_file.read_text() if start and validator_file.is_file() else None
    if start and not validator:
        start = 0  # no ETag / Last-Modified known for these bytes: they may belong to an older file
    try:
        resp = urllib.request.urlopen(_request(url, start, validator), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not start:
            raise
        start = 0  # 416: the partial file is not a prefix we can continue (e.g. already complete): restart
        resp = urllib.request.urlopen(_request(url), timeout=timeout)
    if start and resp.status == 206 and _validator(resp.headers) != validator:
        log.warning("%s: the rest came as %r, not from the file of %r (the server ignores If-Range): starting over",
                    url, _validator(resp.headers), validator)
        resp.close()
        start, resp = 0, urllib.request.urlopen(_request(url), timeout=timeout)
    with resp:
        if start and resp.status != 206:
            start = 0  # 200: the file changed (If-Range failed) or the server ignores Range: the whole file comes
        if start and not resp.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            part.unlink()
            raise _Truncated(f"unexpected Content-Range {resp.headers.get('Content-Range')!r}; restarting")
        if not start:
            validator_file.unlink(missing_ok=True)
            if new := _validator(resp.headers):
                atomic_write_text(validator_file, new)
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(part, "ab" if start else "wb") as f, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, desc=Path(part.name).stem, disable=not progress
        ) as bar:
            while chunk := resp.read1(CHUNK):  # what has arrived, so a stall (timeout) keeps it for the retry
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size != total:
        raise _Truncated(f"got {part.stat().st_size} of {total} bytes")


def _local_source(url: str) -> Path | None:
    """The file behind a file:// URL or a bare local path (never looked up in the mirror), else None."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        path = Path(urllib.request.url2pathname(parts.path))
    elif not parts.scheme or len(parts.scheme) == 1:  # a bare path (a one-letter scheme is a Windows drive)
        path = Path(url)
    else:
        return None
    if not path.is_file():
        raise DownloadError(f"{url}: no such local file {path}")
    return path


@contextlib.contextmanager
def _locked(dest: Path):
    """One writer per destination, across threads and processes (the lock dies with its holder). The lock file
    is removed when its holder is done (a waiter then sees that and locks a new one: edad_core.files.hold)."""
    lock = dest.with_name(f".{dest.name}.lock")
    fd = None
    while fd is None:  # hold() waits for the lock; None: its holder removed the file meanwhile, so lock the new one
        fd = hold(lock, create=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # still holding it
        os.close(fd)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    mirror=None,
    retries: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
    backoff: float = 1.0,
) -> Path:
    """Download `url` (http(s), file:// or a local path) to `dest`, mirror first for http(s); `dest` appears
    only complete, verified and fsynced. Concurrent fetches of one `dest` take turns, and one that waited while
    another wrote `dest` takes that file (when it passes `sha256`) instead of fetching it again."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    before = _stamp(dest)
    with _locked(dest):
        if _stamp(dest) not in (before, None) and (sha256 is None or sha256_file(dest) == sha256.lower()):
            return dest  # written by the fetch this one waited for
        local = _local_source(url)
        root = None if local else mirror_root(mirror)
        if local is None and root is not None and mirror_path(url, root).is_file():
            local = mirror_path(url, root)
        if local is not None:
            shutil.copyfile(local, part)
            _check_sha256(part, sha256, f"local file {local}")
        elif offline():
            raise _offline_error(url, mirror)
        else:
            _with_retries(
                url,
                lambda: _download_to(url, part, timeout=timeout, progress=progress),
                retries=retries,
                backoff=backoff,
                looked_for=_looked_for(url, root),
            )
            _check_sha256(part, sha256, url)
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.replace(part, dest)
        fsync_dir(dest.parent)
        part.with_name(part.name + ".validator").unlink(missing_ok=True)
    return dest


def fetch_bytes(url: str, *, mirror=None, retries: int = 5, timeout: float = 60.0, backoff: float = 1.0) -> bytes:
    """Small files (listings, metadata): same sources and retry logic, nothing written."""
    if (local := _local_source(url)) is not None:
        return local.read_bytes()
    root = mirror_root(mirror)
    if root is not None and (mirrored := mirror_path(url, root)).is_file():
        return mirrored.read_bytes()
    if offline():
        raise _offline_error(url, mirror)

    def attempt() -> bytes:
        with urllib.request.urlopen(_request(url), timeout=timeout) as resp:
            return resp.read()

    return _with_retries(url, attempt, retries=retries, backoff=backoff, looked_for=_looked_for(url, root))


def _digest_ok(data: bytes, algo: str | None, expected: str | None) -> bool:
    return expected is None or hashlib.new(algo, data, usedforsecurity=False).hexdigest() == expected.lower()


def cached_bytes(url: str, cache_dir: Path, mirror, algo: str | None = None, expected: str | None = None, *,
                 refresh: bool = False) -> bytes:
    """Bytes of `url`, from the cache (laid out by URL like the mirror) or fetched into it; a cached file
    that fails the digest, or any cached file when `refresh`, is fetched again. Raises DigestMismatch when the
    fetched bytes fail the digest (the bad copy is removed)."""
    dest = mirror_path(url, cache_dir)
    if not refresh and dest.is_file() and _digest_ok(data := dest.read_bytes(), algo, expected):
        return data
    fetch(url, dest, mirror=mirror, progress=False)
    data = dest.read_bytes()
    if not _digest_ok(data, algo, expected):
        dest.unlink()
        raise DigestMismatch(f"{url}: {algo} mismatch (expected {expected}); the bad copy was removed")
    return data


def hub_file_url(spec: str, filename: str) -> str:
    """The download URL of a file of hub checkpoint `spec`; the mirror holds it at the same path."""
    return f"{HUB}/{spec}/resolve/main/{filename}"


def _complete_checkpoint(folder: Path) -> bool:
    return all((folder / f).is_file() for f in CHECKPOINT_FILES) and any((folder / f).is_file() for f in WEIGHT_FILES)


def local_model(spec: str, mirror=None) -> Path | None:
    """The local folder of model `spec`, found without the network, else None (only the hub has it):
    'pkg:<module>/<subpath>' inside that installed Python package; an existing folder; for a hub id, the mirror's
    complete copy (laid out by download URL: `<mirror>/huggingface.co/<id>/resolve/main/config.json` etc.) or
    else the Hugging Face cache's complete snapshot. A spec that is none of these raises DownloadError."""
    if spec.startswith("pkg:"):
        module, _, sub = spec[len("pkg:") :].partition("/")
        found = importlib.util.find_spec(module)
        if found is None:
            raise DownloadError(f"model {spec!r}: Python package {module!r} is not installed")
        base = Path(found.submodule_search_locations[0] if found.submodule_search_locations else found.origin)
        base = base.resolve() if found.submodule_search_locations else base.resolve().parent
        path = (base / sub).resolve()
        if not path.exists() or not path.is_relative_to(base):
            raise DownloadError(f"model {spec!r}: {path} does not exist inside package {module!r} ({base})")
        return path
    if Path(spec).expanduser().is_dir():
        return Path(spec).expanduser().resolve()
    try:
        validate_repo_id(spec)
    except HFValidationError as err:
        raise DownloadError(f"model {spec!r}: not a folder, a pkg: spec or a hub id ({err})") from err
    if (root := mirror_root(mirror)) is not None:
        folder = mirror_path(hub_file_url(spec, "config.json"), root).parent
        if _complete_checkpoint(folder):
            return folder
    cached = try_to_load_from_cache(spec, "config.json")
    if isinstance(cached, str) and _complete_checkpoint(Path(cached).parent):
        return Path(cached).parent
    return None


def _hub_download(spec: str) -> Path:
    """Download hub checkpoint `spec` into the Hugging Face cache: its config, vocab and weights (safetensors, else
    the PyTorch pickle) and whichever tokenizer files it has. HF_ENDPOINT is read now (a test serves it locally)."""
    endpoint = os.environ.get("HF_ENDPOINT") or None

    def get(name: str) -> Path | None:
        try:
            return Path(hf_hub_download(spec, name, endpoint=endpoint))
        except RemoteEntryNotFoundError:
            return None

    log.info("%s: in neither the mirror nor the Hugging Face cache: downloading it from the hub", spec)
    try:
        folder = None
        for name in CHECKPOINT_FILES:
            if (path := get(name)) is None:
                raise DownloadError(f"{hub_file_url(spec, name)}: no such file on the hub")
            folder = path.parent
        if not any(get(name) for name in WEIGHT_FILES):
            raise DownloadError(f"{spec}: the hub has none of {WEIGHT_FILES}")
        for name in TOKENIZER_FILES:
            get(name)
    except OSError as err:  # network, HTTP and cache errors of huggingface_hub
        raise DownloadError(f"cannot download {hub_file_url(spec, 'config.json')} and the rest of {spec}: {err}") from err
    return folder


def resolve_model(spec: str, mirror=None) -> str:
    """The local folder of model `spec` (see `local_model`); a hub checkpoint found in neither the mirror nor the
    Hugging Face cache is downloaded into that cache, unless EDAD_OFFLINE / HF_HUB_OFFLINE is set: then the error
    names its URL and the mirror folder where it should lie. The mirror is the argument, else env EDAD_MIRROR."""
    if (folder := local_model(spec, mirror)) is not None:
        return str(folder)
    if offline():
        files = f"{', '.join(CHECKPOINT_FILES)} and one of {', '.join(WEIGHT_FILES)}"
        raise _offline_error(hub_file_url(spec, ""), mirror, f"checkpoint {spec} ({files}) is in neither the "
                             "Hugging Face cache nor")
    return str(_hub_download(spec))
