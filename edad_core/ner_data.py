"""NER data: a strict reader for CoNLL-style IOB2 files (TOKEN<TAB>TAG per line, a blank line between
sentences), the `datasets.DatasetDict` the fine-tuning reads, and the workflow stage that downloads,
validates and writes the three benchmark datasets."""

import json
import logging
import re
from collections import Counter
from pathlib import Path

import datasets

from edad_core.download import fetch
from edad_core.files import atomic_write_text

log = logging.getLogger(__name__)

TAG = re.compile(r"O|[BI]-\S+")
Sentence = tuple[list[str], list[str]]


class NerFormatError(ValueError):
    """A malformed IOB2 file; the message starts with path:line."""


def read_iob(path, *, repair: bool = False) -> list[Sentence]:
    """Sentences as (tokens, tags). Any format error -> NerFormatError naming `path:line`. An I-X that does
    not continue a B-X/I-X is an error, or with repair=True becomes B-X with a warning."""
    sentences, tokens, tags = [], [], []
    lineno = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                if tokens:
                    sentences.append((tokens, tags))
                    tokens, tags = [], []
                continue
            if line.startswith("-DOCSTART-"):
                continue
            cols = line.split("\t")
            where = f"{path}:{lineno}"
            if len(cols) != 2:
                raise NerFormatError(f"{where}: expected 2 tab-separated columns TOKEN<TAB>TAG, got {len(cols)}")
            token, tag = cols
            if not token.strip():
                raise NerFormatError(f"{where}: empty token")
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


def prepare_ner_dataset(
    dataset: str,
    *,
    base_url: str,
    splits: list[str],
    out_dir,
    download_dir,
    sha256: dict | None = None,
    mirror=None,
    repair: bool = False,
    max_sentences: int | None = None,
    progress: bool = True,
) -> dict:
    """Fetch `{base_url}/{dataset}/{split}.tsv` for every split (mirror first, sha256-checked), validate all
    splits, keep the first max_sentences of each, then write `{out_dir}/{split}.tsv` and
    `{out_dir}/labels.json`. Nothing is written to out_dir unless every split is valid."""
    sha256 = sha256 or {}
    kept, info = {}, {}
    for split in splits:
        url, pinned = f"{base_url.rstrip('/')}/{dataset}/{split}.tsv", sha256.get(split)
        if pinned is None:
            log.warning("%s: no sha256 pinned (config key ner.sha256), the content is not verified", url)
        raw = fetch(url, Path(download_dir) / f"{split}.tsv", sha256=pinned, mirror=mirror, progress=progress)
        sentences = read_iob(raw, repair=repair)
        kept[split] = _first(sentences, max_sentences)
        info[split] = {"source": url, "sha256": pinned, "source_sentences": len(sentences)}
    summary = {
        "dataset": dataset,
        "label_names": label_names(tags for sents in kept.values() for _, tags in sents),
        "max_sentences": max_sentences,
        "splits": {split: split_stats(kept[split]) | info[split] for split in splits},
    }
    out_dir = Path(out_dir)
    for split in splits:
        write_iob(kept[split], out_dir / f"{split}.tsv")
    atomic_write_text(out_dir / "labels.json", json.dumps(summary, indent=2) + "\n")
    return summary
