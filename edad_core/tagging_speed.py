"""Tagging speed of an exported tagger on raw text (its model card, Table 5's tagging rows, bench/tagging.py):
`edad predict`'s path (edad_core.tagger) on PyTorch fp32, ONNX fp32 and ONNX int8, against transformers'
token-classification pipeline on the same model and sentences, timed interleaved (edad_core.timing).

    rows = measure_folders({"EDAD_linear": folder, "exBERT": teacher_folder}, documents, threads=2, batch_size=32,
                           rounds=3, test=(test_text, gold_tags))   # documents: [{"id", "text"}]
    # a row per model x backend: sentences/s and characters/s (median, min, max), size_mb, test_entity_f1

The pipeline has no sentence splitter (given a whole article it would truncate it at 512 pieces), so it gets the
tagger's sentences as strings, split beforehand and not timed, with aggregation "first"; its entities are mapped
back onto each sentence's words, so that its F1 is computed as the tagger's (`entity_f1`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
from seqeval.metrics import f1_score

from edad_core.onnx_export import FILES
from edad_core.tagger import SCHEMES, TAGGER_KEY, Tagger, sentences_of, words_of
from edad_core.timing import interleaved, spread

log = logging.getLogger(__name__)

BACKENDS = {"pytorch": "edad predict, PyTorch fp32", "fp32": "edad predict --onnx fp32",
            "int8": "edad predict --onnx int8", "pipeline": "transformers pipeline, PyTorch fp32"}


def backends(folder) -> list[str]:
    """PyTorch and the pipeline, and ONNX fp32 / int8 where the folder has their files (edad_core.onnx_export)."""
    return ["pytorch", *(b for b in ("fp32", "int8") if (Path(folder) / FILES[b]).is_file()), "pipeline"]


def size_mb(folder, backend: str) -> float:
    """The weights' size on disk: the safetensors files, or the ONNX file."""
    folder = Path(folder)
    files = [folder / FILES[backend]] if backend in FILES else list(folder.glob("*.safetensors"))
    return round(sum(f.stat().st_size for f in files) / 1e6, 1)


class TaggerRun:
    """`Tagger.tag` over the documents (the whole of `edad predict` but reading and writing files)."""

    def __init__(self, tagger: Tagger):
        self.tagger, self.documents, self.tagged = tagger, [], []

    def prepare(self, documents: list[dict]) -> None:
        self.documents = documents

    def run(self) -> None:
        self.tagged = list(self.tagger.tag(self.documents))

    def result(self) -> list[dict]:
        return self.tagged


class PipelineRun:
    """transformers' pipeline on the tagger's sentences; `result` puts its entities on the tagger's words."""

    def __init__(self, folder, *, threads: int, batch_size: int):
        import torch
        from transformers import AutoTokenizer, pipeline

        torch.set_num_threads(threads)
        # a sentence longer than the fine-tuning window is cut into overlapping chunks of that length (the
        # pipeline's `stride`), as the tagger cuts it into windows; without it the pipeline fails past the model's
        # positions
        window = json.loads((Path(folder) / "config.json").read_text())[TAGGER_KEY]["max_length"]
        tokenizer = AutoTokenizer.from_pretrained(folder, model_max_length=window, trust_remote_code=True)
        self.ner = pipeline("token-classification", model=str(folder), tokenizer=tokenizer, trust_remote_code=True,
                            aggregation_strategy="first", stride=window // 4, device="cpu")
        self.batch_size, self.documents, self.spans, self.output = batch_size, [], [], []

    def prepare(self, documents: list[dict]) -> None:
        self.documents = documents
        self.spans = [sentences_of(d["text"]) for d in documents]

    def run(self) -> None:
        lines = [d["text"][s:e] for d, spans in zip(self.documents, self.spans) for s, e in spans]
        self.output = self.ner(lines, batch_size=self.batch_size)

    def result(self) -> list[dict]:
        out, found = [], iter(self.output)
        for doc, spans in zip(self.documents, self.spans):
            sentences = []
            for s, e in spans:
                words = words_of(doc["text"], s, e)
                tags = ["O"] * len(words)
                for entity in next(found):
                    inside = [i for i, (a, b) in enumerate(words) if a < s + entity["end"] and b > s + entity["start"]]
                    for i in inside:
                        tags[i] = ("B-" if i == inside[0] else "I-") + entity["entity_group"]
                sentences.append([[a, b, t] for (a, b), t in zip(words, tags)])
            out.append({**doc, "sentences": sentences})
        return out


def backend_run(folder, backend: str, *, threads: int, batch_size: int):
    if backend == "pipeline":
        return PipelineRun(folder, threads=threads, batch_size=batch_size)
    return TaggerRun(Tagger(folder, onnx=FILES.get(backend), device="cpu", batch_size=batch_size, threads=threads))


def measure(runs: dict, documents: list[dict], *, rounds: int) -> list[dict]:
    """Each run (key (model, backend)) warmed up on the first document, then timed on all of them, interleaved,
    `rounds` times: sentences/s and characters/s (median, min, max) and the 1-minute load after each round."""
    for run in runs.values():
        run.prepare(documents[:1])
        run.run()
    for run in runs.values():
        run.prepare(documents)
    timings = interleaved({key: run.run for key, run in runs.items()}, rounds, warmup=False)
    sentences = sum(len(d["sentences"]) for d in next(iter(runs.values())).result())
    characters = sum(len(d["text"]) for d in documents)
    rows = []
    for (model, backend), t in timings.items():
        rows.append({"model": model, "backend": backend, "documents": len(documents), "sentences": sentences,
                     "characters": characters, "rounds": rounds,
                     "sentences_per_s": spread([sentences / s for s in t["seconds"]]),
                     "characters_per_s": spread([characters / s for s in t["seconds"]]), "load": t["load"]})
        log.info("tagging speed: %s", rows[-1])
    return rows


def entity_f1(tagged: list[dict], gold: list[list[str]], folder) -> float:
    """seqeval F1 (%) of the tagged documents' word tags against `gold` (one tag list per sentence), decoded as the
    folder's model was evaluated (config.json `edad_tagger`)."""
    settings = json.loads((Path(folder) / "config.json").read_text())[TAGGER_KEY]
    ours = [[t for *_, t in sentence] for doc in tagged for sentence in doc["sentences"]]
    if [len(s) for s in ours] != [len(g) for g in gold]:
        raise ValueError("the tagged text does not split into the gold sentences and words")
    mode = settings["seqeval_mode"]
    return 100 * f1_score(gold, ours, mode=mode, scheme=None if mode is None else SCHEMES[settings["seqeval_scheme"]])


def measure_folders(folders: dict, documents: list[dict], *, threads: int, batch_size: int, rounds: int,
                    test: tuple[str, list[list[str]]] | None = None) -> list[dict]:
    """Every backend of every tagger folder ({model: folder}), timed together (`measure`), with its weights' size and,
    given `test` (a test split as raw text, one sentence per line, and its gold tags), its test entity F1."""
    runs = {(model, b): backend_run(folder, b, threads=threads, batch_size=batch_size)
            for model, folder in folders.items() for b in backends(folder)}
    f1 = {}
    for key, run in runs.items() if test else ():
        run.prepare([{"id": "test", "text": test[0]}])
        run.run()
        f1[key] = round(entity_f1(run.result(), test[1], folders[key[0]]), 2)
    return [{**row, "threads": threads, "batch_size": batch_size,
             "size_mb": size_mb(folders[row["model"]], row["backend"]),
             "test_entity_f1": f1.get((row["model"], row["backend"]))} for row in measure(runs, documents, rounds=rounds)]


SPEED_COLUMNS = ["Model", "Tagging with", "Size (MB)", "Sentences/s", "Characters/s", "Test entity F1"]


def speed_frame(rows: list[dict]) -> pd.DataFrame:
    """One line per model x backend (the card's table and Table 5's tagging rows): size, speed (median and range of
    the rounds), test entity F1."""
    def cell(x: dict) -> str:
        return f"{x['median']:,.0f} ({x['min']:,.0f}-{x['max']:,.0f})"

    return pd.DataFrame([[r["model"], BACKENDS[r["backend"]], f"{r['size_mb']:.1f}", cell(r["sentences_per_s"]),
                          cell(r["characters_per_s"]),
                          "" if r["test_entity_f1"] is None else f"{r['test_entity_f1']:.2f}"] for r in rows], columns=SPEED_COLUMNS)


def speed_note(rows: list[dict], source: str) -> str:
    """How the rows were measured, and `edad predict`'s median speed over the pipeline's."""
    first = rows[0]
    loads = [x for r in rows for x in r["load"]]
    ratios = [f"{model}: {by['pytorch'] / by['pipeline']:.2f}x" for model, by in _medians(rows).items()
              if "pipeline" in by]
    threads = f"{first['threads']} thread" + ("s" if first["threads"] != 1 else "")
    return (f"CPU, {threads}, batch {first['batch_size']}, {first['documents']} documents ({source}; "
            f"{first['sentences']:,} sentences, {first['characters']:,} characters), end to end from raw "
            f"text; median (min-max) of {first['rounds']} interleaved rounds, 1-minute load average "
            f"{min(loads):.2f}-{max(loads):.2f}. `edad predict` (PyTorch) over the pipeline: {', '.join(ratios)}. "
            "Test entity F1: the test split tagged as raw text, this seed.")


def _medians(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(r["model"], {})[r["backend"]] = r["sentences_per_s"]["median"]
    return out
