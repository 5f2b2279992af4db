"""NER data: a strict reader for CoNLL-style IOB2 files (TOKEN<TAB>TAG per line, a blank line between
sentences), the `datasets.DatasetDict` the fine-tuning reads, and the workflow stage that downloads,
validates and writes the three benchmark datasets.

    sentences = read_iob("train.tsv")                                   # [(tokens, tags)]; errors name file:line
    data = load_ner_dataset({"train": "train.tsv", "devel": "devel.tsv", "test": "test.tsv"})
    prepare_ner_dataset("BC5CDR-IOB", files=urls_by_split, out_dir=..., download_dir=...)   # rule ner_data
"""

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import datasets

from edad_core.download import fetch
from edad_core.files import atomic_write_text

log = logging.getLogger(__name__)

TAG = re.compile(r"O|[BI]-\S+")
Sentence = tuple[list[str], list[str]]


class NerFormatError(ValueError):
    """A malformed IOB2 file; the message starts with path:line."""


def _lines(path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, a leading BOM dropped; an undecodable line -> NerFormatError."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise NerFormatError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None
            yield lineno, (line.removeprefix("\ufeff") if lineno == 1 else line).rstrip("\r\n")


def read_iob(path, *, repair: bool = False, token_column: int = 0, tag_column: int = -1) -> list[Sentence]:
    """Sentences as (tokens, tags). Columns are tab-separated (or whitespace-separated in a line without tabs,
    as CoNLL-2003's); the token and the tag are read from `token_column` and `tag_column` (0-based, negative
    from the end). Any format error -> NerFormatError naming `path:line`. An I-X that does not continue a
    B-X/I-X is an error, or with repair=True becomes B-X with a warning."""
    sentences, tokens, tags = [], [], []
    lineno, width = 0, None
    for lineno, line in _lines(path):
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if line.startswith("-DOCSTART-"):
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
        raise NerFormatError(f"{path}:{max(lineno, 1)}: no sentences (empty file)")
    return sentences


def label_names(tag_lists) -> list[str]:
    """'O', then B-X, I-X for every entity type X in sorted order."""
    types = sorted({tag[2:] for tags in tag_lists for tag in tags if tag != "O"})
    return ["O"] + [f"{prefix}-{t}" for t in types for prefix in "BI"]


def load_ner_dataset(files: dict, *, repair: bool = False, max_sentences: int | None = None) -> datasets.DatasetDict:
    """{split: IOB file} -> DatasetDict with `tokens` and `ner_tags` (ClassLabel over the union of all splits'
    labels, so every split shares one label list)."""
    splits = {split: _first(read_iob(path, repair=repair), max_sentences) for split, path in files.items()}
    names = label_names(tags for sents in splits.values() for _, tags in sents)
    features = datasets.Features(
        {"tokens": datasets.List(datasets.Value("string")), "ner_tags": datasets.List(datasets.ClassLabel(names=names))}
    )
    index = {name: i for i, name in enumerate(names)}
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {"tokens": [t for t, _ in sents], "ner_tags": [[index[g] for g in tags] for _, tags in sents]},
                features=features,
            )
            for split, sents in splits.items()
        }
    )


def _first(sentences: list[Sentence], max_sentences: int | None) -> list[Sentence]:
    if max_sentences is not None and max_sentences < 1:
        raise ValueError(f"max_sentences (config key ner.max_sentences) must be >= 1 or null, got {max_sentences}")
    return sentences[:max_sentences]


def write_iob(sentences: list[Sentence], path) -> None:
    """The same format read_iob reads (and the benchmark files use): the file ends with a blank line."""
    atomic_write_text(path, "".join("".join(f"{t}\t{g}\n" for t, g in zip(*s)) + "\n" for s in sentences))


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
    and `{out_dir}/labels.json`. Nothing is written to out_dir unless every split is valid."""
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
    for split in files:
        write_iob(kept[split], out_dir / f"{split}.tsv")
    atomic_write_text(out_dir / "labels.json", json.dumps(summary, indent=2) + "\n")
    return summary
