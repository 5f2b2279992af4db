"""NER data: a strict reader for CoNLL-style IOB2 files (TOKEN<TAB>TAG per line, a blank line between
sentences), and the workflow stage that downloads, validates and writes the three benchmark datasets.

    sentences = read_iob("train.tsv")                                   # [(tokens, tags)]; errors name file:line
    prepare_ner_dataset("BC5CDR-IOB", files=urls_by_split, out_dir=..., download_dir=...)   # rule ner_data
"""

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from edad_core.download import fetch
from edad_core.files import atomic_files, atomic_write_text, check_complete

log = logging.getLogger(__name__)

TAG = re.compile(r"O|[BI]-\S+")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")  # one path component, never '.' or '..', no shell quoting
BOM = "\ufeff"
Sentence = tuple[list[str], list[str]]


class NerFormatError(ValueError):
    """A malformed IOB2 file; the message starts with path:line."""


def safe_name(name, key: str) -> str:
    """`name` (a dataset or model name that becomes a folder and a Snakemake wildcard) if it is one safe path
    component, else ValueError naming the config `key`."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ValueError(f"{key}: {name!r} is not a safe name for a folder (letters, digits and . _ + -, not "
                         f"starting with . or -, at most 100 characters)")
    return name


def _lines(path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file: lines end in LF, CRLF or a lone CR (old Mac files); a BOM at the
    start of a line is dropped (at line 1 the file's own; later, that of a file concatenated to it, with a
    warning); an undecodable line -> NerFormatError."""
    check_complete(path)
    for lineno, raw in enumerate(Path(path).read_bytes().splitlines(), 1):  # bytes split only at LF, CR, CRLF
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NerFormatError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None
        if line.startswith(BOM):
            if lineno > 1:
                log.warning("%s:%d: a byte-order mark (two files joined?); dropped", path, lineno)
            line = line.removeprefix(BOM)
        yield lineno, line


def read_iob(path, *, repair: bool = False, token_column: int = 0, tag_column: int = -1) -> list[Sentence]:
    """Sentences as (tokens, tags). Columns are tab-separated (or whitespace-separated in a line without tabs,
    as CoNLL-2003's); the token and the tag are read from `token_column` and `tag_column` (0-based, negative
    from the end). Any format error -> NerFormatError naming `path:line`. An I-X that does not continue a
    B-X/I-X is an error, or with repair=True becomes B-X with a warning."""
    sentences, tokens, tags = [], [], []
    lineno, width, docstarts = 0, None, 0
    for lineno, line in _lines(path):
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if line.startswith("-DOCSTART-"):
            docstarts += 1
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        where = f"{path}:{lineno}"
        width = width or len(cols)
        if len(cols) != width or len(cols) < 2:
            raise NerFormatError(f"{where}: expected {max(width, 2)} columns (TOKEN ... TAG), got {len(cols)}")
        try:
            token, tag = cols[token_column], cols[tag_column]
        except IndexError:
            raise NerFormatError(f"{where}: no column {token_column} / {tag_column} in {len(cols)} columns "
                                 "(token_column / tag_column)") from None
        if not token.strip():
            raise NerFormatError(f"{where}: empty token")
        if BOM in token:
            raise NerFormatError(f"{where}: a byte-order mark (U+FEFF) inside the token {token!r}")
        if token != token.strip() or tag != tag.strip():
            raise NerFormatError(f"{where}: token or tag with leading or trailing whitespace ({token!r}, {tag!r})")
        if not TAG.fullmatch(tag):
            raise NerFormatError(f"{where}: unknown tag {tag!r} (expected O, B-<type> or I-<type>)")
        if tag[0] == "I" and (not tags or tags[-1][2:] != tag[2:]):
            prev = tags[-1] if tags else "sentence start"
            if not repair:
                raise NerFormatError(f"{where}: {tag} follows {prev} (not IOB2; set ner.repair_iob to fix)")
            log.warning("%s: %s follows %s: repaired to B-%s", where, tag, prev, tag[2:])
            tag = "B" + tag[1:]
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        what = f"only {docstarts} -DOCSTART- line(s)" if docstarts else "an empty file"
        raise NerFormatError(f"{path}:{max(lineno, 1)}: no sentences ({what})")
    return sentences


def label_names(tag_lists) -> list[str]:
    """'O', then B-X, I-X for every entity type X in sorted order."""
    types = sorted({tag[2:] for tags in tag_lists for tag in tags if tag != "O"})
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in "BI"]


def _first(sentences: list[Sentence], max_sentences: int | None) -> list[Sentence]:
    if max_sentences is not None and max_sentences < 1:
        raise ValueError(f"max_sentences (config key ner.max_sentences) must be >= 1 or null, got {max_sentences}")
    return sentences[:max_sentences]


def iob_text(sentences: list[Sentence]) -> str:
    """The same format read_iob reads (and the benchmark files use): the text ends with a blank line."""
    return "".join("".join(f"{t}\t{g}\n" for t, g in zip(*s)) + "\n" for s in sentences)


def write_iob(sentences: list[Sentence], path) -> None:
    atomic_write_text(path, iob_text(sentences))


def split_stats(sentences: list[Sentence]) -> dict:
    entities = Counter(tag[2:] for _, tags in sentences for tag in tags if tag[0] == "B")
    return {
        "sentences": len(sentences),
        "tokens": sum(len(tokens) for tokens, _ in sentences),
        "entities": dict(sorted(entities.items())),
    }


def benchmark_files(base_url: str, dataset: str, splits) -> dict[str, str]:
    """{split: URL} of a benchmark laid out as `{base_url}/{dataset}/{split}.tsv` (MTL-Bioinformatics-2016)."""
    return {split: f"{base_url.rstrip('/')}/{dataset}/{split}.tsv" for split in splits}


def prepare_ner_dataset(
    dataset: str,
    *,
    files: dict[str, str],
    out_dir,
    download_dir,
    sha256: dict | None = None,
    mirror=None,
    repair: bool = False,
    max_sentences: int | None = None,
    token_column: int = 0,
    tag_column: int = -1,
    progress: bool = True,
) -> dict:
    """Fetch every split of `files` ({split: URL or local path}; URLs mirror first, sha256-checked when pinned),
    validate all splits, keep the first max_sentences of each, then write `{out_dir}/{split}.tsv` (TOKEN<TAB>TAG)
    and `{out_dir}/labels.json`, all together (edad_core.files.atomic_files). Nothing is written to out_dir
    unless every split is valid. `dataset` must be a safe folder name (`safe_name`)."""
    safe_name(dataset, "ner.datasets")
    sha256 = sha256 or {}
    kept, info = {}, {}
    for split, source in files.items():
        pinned = sha256.get(split)
        if pinned is None:
            log.warning("%s: no sha256 pinned (config key ner.sha256 / sha256), the content is not verified", source)
        raw = fetch(source, Path(download_dir) / f"{split}.tsv", sha256=pinned, mirror=mirror, progress=progress)
        sentences = read_iob(raw, repair=repair, token_column=token_column, tag_column=tag_column)
        kept[split] = _first(sentences, max_sentences)
        info[split] = {"source": source, "sha256": pinned, "source_sentences": len(sentences)}
    summary = {
        "dataset": dataset,
        "label_names": label_names(tags for sents in kept.values() for _, tags in sents),
        "max_sentences": max_sentences,
        "splits": {split: split_stats(kept[split]) | info[split] for split in files},
    }
    out_dir = Path(out_dir)
    with atomic_files(*(out_dir / f"{split}.tsv" for split in files), out_dir / "labels.json") as temps:
        for split, tmp in zip(files, temps):
            tmp.write_text(iob_text(kept[split]), encoding="utf-8")
        temps[-1].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
