"""Tagging speed from raw text (issues 22 and 23): `edad predict`'s path (edad_core.tagger) on PyTorch fp32, ONNX
fp32 and ONNX int8, against transformers' token-classification pipeline on the same model and sentences, for the
student and the teacher, interleaved (A B C D A B C D ...), at --threads threads and batch 32. Per row: sentences/s
and characters/s (median of the rounds, with min-max), the size on disk of the weights, and, with --test, the
test entity F1 of the tagger's entities (seqeval as the model was evaluated).

    python bench/tagging.py --student results/mini/export/EDAD_linear-BC5CDR-IOB \\
        --teacher results/mini/export/exBERT-BC5CDR-IOB --test results/mini/ner/BC5CDR-IOB/test.tsv
    python bench/tagging.py --stand-in mini           # untrained models of the mini profile's shapes (speed only)

Text: --text (default: the mirror's CRAFT articles, ../shared/mirror/.../CRAFT/.../articles/txt/*.txt, --documents
of them) or, with --test, the test split as raw text (edad_core.export.raw_test_text). The pipeline gets the
tagger's sentences as strings (its own path has no sentence splitter: given a whole article it would truncate it at
512 pieces), batch 32, aggregation "first". Each ONNX file is written into the folder by edad_core.onnx_export if
missing (a stand-in folder is made under --work). Prints one JSON line per row and a summary line.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from seqeval.metrics import f1_score

import harness
from edad_core.export import raw_test_text
from edad_core.hub import export_for_hub
from edad_core.modeling import ExBertConfig, ExBertForTokenClassification
from edad_core.ner_data import read_iob
from edad_core.onnx_export import FILES, export_onnx
from edad_core.tagger import SCHEMES, TAGGER_KEY, Tagger

CRAFT = "raw.githubusercontent.com/UCDenver-ccp/CRAFT/2abe82b8bb8089448b84937d5f61d8c218011322/articles/txt"
LABELS = ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]


def stand_in(role: str, config: dict, folder: Path) -> Path:
    """A tagger folder with the profile's shapes (random weights: speed only): the student, or the exBERT teacher
    (made once under `folder`)."""
    out = folder / role
    if (out / "config.json").is_file():
        return out
    base = harness.base_model("mini", config, folder / "base")
    shape = harness.teacher_shape("mini", config).to_dict()
    models, ext = config["models"], config["vocab"]["ext_size"]
    sizes = models["student"] if role == "student" else {**models["teacher"], **{
        k: shape[k] for k in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")}}
    tokenizer = harness.extended_tokenizer(base, ext, folder / f"{role}-tokenizer")
    torch.manual_seed(0)
    model = ExBertForTokenClassification(ExBertConfig(
        vocab_size=shape["vocab_size"], ext_vocab_size=ext, num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)},
        **{k: v for k, v in sizes.items() if k != "base"}))
    raw = folder / f"{role}-raw"
    model.save_pretrained(raw)
    for f in Path(tokenizer).iterdir():
        shutil.copy(f, raw / f.name)
    export_for_hub(raw, out, extra_config={TAGGER_KEY: {"max_length": 128, "seqeval_mode": "strict",
                                                         "seqeval_scheme": "IOB2"}})
    return out


def weight_mb(folder: Path, backend: str) -> float:
    files = list(folder.glob("*.safetensors")) if backend == "pytorch" else [folder / FILES[backend]]
    return round(sum(f.stat().st_size for f in files) / 1e6, 1)


def main() -> None:
    p = harness.parser(__doc__)
    p.add_argument("--student", type=Path, help="an exported tagger folder (rule export_ner)")
    p.add_argument("--teacher", type=Path, help="an exported tagger folder of the teacher, same dataset")
    p.add_argument("--stand-in", choices=["mini"], help="untrained models of the profile's shapes instead")
    p.add_argument("--test", type=Path, help="the dataset's test.tsv: tag it as raw text and report entity F1")
    p.add_argument("--text", type=Path, nargs="*", help=".txt files to tag (default: the mirror's CRAFT articles)")
    p.add_argument("--documents", type=int, default=20, help="CRAFT articles to tag (default 20)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path("work/bench_tagging"))
    args = harness.parse(p)
    folders = {}
    if args.stand_in:
        config = harness.profile_config(args.stand_in)
        folders = {role: stand_in(role, config, args.work) for role in ("student", "teacher")}
    folders.update({r: f for r, f in (("student", args.student), ("teacher", args.teacher)) if f})
    if args.test:
        gold = read_iob(args.test)
        docs = [{"id": "test", "text": raw_test_text([w for w, _ in gold])[0]}]
    else:
        files = args.text or sorted((harness.PROJECT.parent / "shared" / "mirror" / CRAFT).glob("*.txt"))
        docs = [{"id": f.stem, "text": f.read_text()} for f in files[: args.documents]]
    for folder in folders.values():
        if not (folder / FILES["int8"]).is_file():
            export_onnx(folder)

    cases, taggers, results = {}, {}, {}
    for role, folder in folders.items():
        for backend in ("pytorch", "fp32", "int8"):
            tagger = Tagger(folder, onnx=None if backend == "pytorch" else FILES[backend], device="cpu",
                            batch_size=32, threads=args.threads)
            taggers[role, backend] = tagger
            cases[f"{role} {backend}"] = lambda t=tagger, k=(role, backend): results.__setitem__(k, list(t.tag(docs)))
        cases[f"{role} pipeline"] = pipeline_case(folder, taggers[role, "pytorch"], docs, results, role)
    sentences = sum(len(d["sentences"]) for d in next(iter(taggers.values())).tag(docs))
    characters = sum(len(d["text"]) for d in docs)
    timings = harness.interleaved(cases, args.rounds)
    for name, t in timings.items():
        role, backend = name.split()
        record = {"case": name, "threads": args.threads, "batch": 32, "sentences": sentences,
                  "characters": characters, "sentences_per_s": harness.spread([sentences / s for s in t["seconds"]]),
                  "characters_per_s": harness.spread([characters / s for s in t["seconds"]]),
                  "cpu_seconds": harness.spread(t["cpu_seconds"]), "load": t["load"],
                  "size_mb": weight_mb(folders[role], "pytorch" if backend == "pipeline" else backend)}
        if args.test and backend != "pipeline":
            tagger, (doc,) = taggers[role, backend], results[role, backend]
            scheme = None if tagger.mode is None else SCHEMES[tagger.scheme]
            record["test_entity_f1"] = round(100 * f1_score([t for _, t in gold], [[t for *_, t in s] for s in
                                                             doc["sentences"]], mode=tagger.mode, scheme=scheme), 2)
        harness.emit(record)
    for role in folders:
        speed = {b: np.median([sentences / s for s in timings[f"{role} {b}"]["seconds"]])
                 for b in ("pytorch", "fp32", "int8", "pipeline")}
        harness.summary_line("tagging", f"{role}: " + ", ".join(f"{b} {v:.0f}" for b, v in speed.items())
                             + f" sentences/s; edad predict (pytorch) / pipeline = {speed['pytorch'] / speed['pipeline']:.2f}"
                             + f" at load {timings[f'{role} pytorch']['load']}")


def pipeline_case(folder: Path, tagger: Tagger, docs: list[dict], results: dict, role: str):
    """transformers' pipeline on the tagger's sentences (split beforehand, not timed)."""
    from transformers import pipeline

    ner = pipeline("token-classification", model=str(folder), trust_remote_code=True, aggregation_strategy="first",
                   device="cpu")
    lines = [d["text"][s[0][0] : s[-1][1]] for d in tagger.tag(docs) for s in d["sentences"]]

    def run():
        start = time.perf_counter()
        results[role, "pipeline"] = ner(lines, batch_size=32)
        return time.perf_counter() - start
    return run


if __name__ == "__main__":
    main()
