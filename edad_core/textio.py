"""Documents in and out of `edad predict`: plain text, JSONL and PubTator in; JSONL, CoNLL and PubTator out.

    docs = list(read_documents(["notes/", "abstracts.jsonl", "corpus.pubtator"]))   # {"id", "text"} each
    write_documents(tagged_docs, "out.pubtator", "pubtator")                        # atomic: all or nothing

- `.txt` (or a folder: its *.txt files, sorted): one document per file, id = the file name without .txt.
- `.jsonl`: one JSON object per line with a string "id" (or a number) and a non-empty string "text".
- `.pubtator`: `ID|t|title`, `ID|a|abstract`, annotation lines, a blank line between documents; the text is
  title + "\\n" + abstract (one character between them, so PubTator's offsets are the text's). Its annotations
  are read back (`read_pubtator`) but not used as input.
- Output JSONL: {"id", "text", "entities": [{start, end, text, label, score}]}; CoNLL: `-DOCSTART-<TAB>id`,
  then one `word<TAB>tag` line per word (IOB2, from the entities) and a blank line after each sentence
  (edad_core.ner_data.read_iob reads it); PubTator: the entity lines are
  `ID<TAB>start<TAB>end<TAB>text<TAB>label<TAB><TAB>score` (no concept identifier; the score in column 7).
  PubTator holds a title and an abstract, each one line: a text with a second line break cannot be written.
Bad input raises InputError naming the file and line. (The `bioc` package was not used: its PubTator reader strips
every line, so texts with leading or trailing spaces do not round-trip, and it prints unreadable lines instead of
failing.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from edad_core.files import atomic_files

FORMATS = ("jsonl", "conll", "pubtator")


class InputError(ValueError):
    """Unusable input; the message starts with file:line."""


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a UTF-8 file; undecodable bytes -> InputError naming the line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start} of the line)") from None


def _check_id(doc_id, where: str) -> str:
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or str(doc_id) == "":
        raise InputError(f"{where}: \"id\" must be a non-empty string or a number, got {doc_id!r}")
    doc_id = str(doc_id)
    if any(c in doc_id for c in "\t\n\r|"):
        raise InputError(f"{where}: id {doc_id!r} contains a tab, a line break or '|' (PubTator and CoNLL "
                         "could not hold it)")
    return doc_id


def read_txt(path: Path) -> dict:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 ({e.reason} at byte {e.start})") from None
    if not text.strip():
        raise InputError(f"{path}:1: no text (the file is empty or only whitespace)")
    return {"id": _check_id(path.name.removesuffix(".txt"), str(path)), "text": text}


def read_jsonl(path: Path) -> Iterator[dict]:
    for lineno, line in _text_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(doc, dict):
            raise InputError(f"{where}: expected a JSON object with \"id\" and \"text\"")
        if not isinstance(doc.get("text"), str) or not doc["text"].strip():
            raise InputError(f"{where}: no \"text\" (a non-empty string is needed)")
        yield {**doc, "id": _check_id(doc.get("id"), where)}


def read_pubtator(path: Path) -> Iterator[dict]:
    """Documents {"id", "text", "entities"} (entities: the annotation lines, score None when absent)."""
    doc, where = None, str(path)

    def finish(doc):
        if doc["title"] is None:
            raise InputError(f"{where}: document {doc['id']} has no |t| (title) line")
        text = doc["title"] if doc["abstract"] is None else doc["title"] + "\n" + doc["abstract"]
        for e in doc["entities"]:
            if text[e["start"] : e["end"]] != e["text"]:
                raise InputError(f"{where}: document {doc['id']}: offsets {e['start']}-{e['end']} give "
                                 f"{text[e['start']:e['end']]!r}, the line says {e['text']!r}")
        return {"id": doc["id"], "text": text, "entities": doc["entities"]}

    for lineno, line in _text_lines(path):
        where = f"{path}:{lineno}"
        if not line:
            if doc:
                yield finish(doc)
            doc = None
            continue
        head, sep, rest = line.partition("|")
        if sep and rest[:2] in ("t|", "a|") and "\t" not in head:
            part = "title" if rest[0] == "t" else "abstract"
            if doc is None:
                doc = {"id": _check_id(head, where), "title": None, "abstract": None, "entities": []}
            elif head != doc["id"]:
                raise InputError(f"{where}: id {head} inside document {doc['id']} (a blank line must separate them)")
            if doc[part] is not None or (part == "title" and doc["abstract"] is not None):
                raise InputError(f"{where}: a second or misplaced |{rest[0]}| line in document {head}")
            doc[part] = rest[2:]
            continue
        cols = line.split("\t")
        if doc is None or cols[0] != doc["id"] or not 5 <= len(cols) <= 7:
            raise InputError(f"{where}: expected ID|t|title, ID|a|abstract or an annotation line "
                             "ID<TAB>start<TAB>end<TAB>text<TAB>type[<TAB>identifier[<TAB>score]] of the document")
        try:
            start, end = int(cols[1]), int(cols[2])
            score = float(cols[6]) if len(cols) == 7 else None
        except ValueError:
            raise InputError(f"{where}: start, end (integers) or score (a number) unreadable") from None
        doc["entities"].append({"start": start, "end": end, "text": cols[3], "label": cols[4], "score": score})
    if doc:
        yield finish(doc)


def input_files(paths) -> list[tuple[Path, str]]:
    """(file, format) of every input: a folder gives its *.txt files (sorted, recursively)."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("*.txt"))
            if not found:
                raise InputError(f"{p}: a folder without .txt files")
            files += [(f, "txt") for f in found]
        elif not p.is_file():
            raise InputError(f"{p}: no such file or folder")
        else:
            files.append((p, {".jsonl": "jsonl", ".pubtator": "pubtator"}.get(p.suffix, "txt")))
    return files


def read_documents(paths) -> Iterator[dict]:
    """Every document of the inputs, in order; two documents with one id -> InputError."""
    seen = {}
    for path, fmt in input_files(paths):
        docs = [read_txt(path)] if fmt == "txt" else read_jsonl(path) if fmt == "jsonl" else read_pubtator(path)
        for doc in docs:
            if doc["id"] in seen:
                raise InputError(f"{path}: document id {doc['id']} also in {seen[doc['id']]}")
            seen[doc["id"]] = path
            yield {"id": doc["id"], "text": doc["text"]}


def to_jsonl(doc: dict) -> str:
    return json.dumps({"id": doc["id"], "text": doc["text"], "entities": doc["entities"]}, ensure_ascii=False) + "\n"


def to_conll(doc: dict) -> str:
    text = doc["text"]
    lines = [f"-DOCSTART-\t{doc['id']}\n\n"]
    for sentence in doc["sentences"]:
        lines += [f"{text[s:e]}\t{tag}\n" for s, e, tag in sentence] + ["\n"]
    return "".join(lines)


def to_pubtator(doc: dict) -> str:
    title, sep, abstract = doc["text"].partition("\n")
    if "\n" in abstract or "\r" in doc["text"]:
        raise InputError(f"document {doc['id']}: PubTator holds a title and an abstract of one line each; this "
                         "text has more line breaks (write JSONL or CoNLL instead)")
    lines = [f"{doc['id']}|t|{title}\n"] + ([f"{doc['id']}|a|{abstract}\n"] if sep else [])
    lines += [f"{doc['id']}\t{e['start']}\t{e['end']}\t{e['text']}\t{e['label']}\t\t{e['score']!r}\n"
              for e in doc["entities"]]
    return "".join(lines) + "\n"


WRITERS = {"jsonl": to_jsonl, "conll": to_conll, "pubtator": to_pubtator}


def write_documents(docs: Iterable[dict], path, fmt: str) -> int:
    """Write tagged documents to `path` in `fmt` (FORMATS); the file appears only when all are written. Returns
    the number of documents."""
    n = 0
    with atomic_files(path) as (tmp,), open(tmp, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(WRITERS[fmt](doc))
            n += 1
    return n
