"""A fine-tuned NER model as a tagger anyone can run (rule export_ner): the kept model of one seed, its code for
transformers alone (edad_core.hub), the settings the tagger needs, its ONNX fp32 and int8 files
(edad_core.onnx_export), a check that the tagger reproduces the run's test predictions, the test F1 and speed on
raw text of every backend (edad_core.tagging_speed: speed.json), and a model card.

    seed = median_seed(results)                      # results: result.json of every seed of one model x dataset
    docs, source = speed_documents(config["export"]["ner"]["speed"], mirror=..., cache_dir=...)
    export_ner(result_dir=".../seed2", summary_csv=..., test_tsv=..., out_dir=..., provenance={...}, command=...,
               onnx=True, speed={"threads": 2, "batch_size": 32, "rounds": 3, "source": source}, speed_documents=docs)

The check: the test split's sentences, written as raw text with known offsets (one sentence per line, words
separated by a space, but none after a period, ! or ? (and its closing brackets) inside a sentence: "2 .5",
"i .v .)", which the sentence splitter does not cut, as it does not cut "2.5" in real text), are tagged
end to end; every word's label must equal the run's predictions-test.conll, the entities' IOB2 tags must equal
that file's tags decoded the same way, and the seqeval F1 must be the run's (check.json; a difference is logged
and shown in the card, not fatal: a near tie decided by float noise is no error).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
from pathlib import Path

import pandas as pd
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from seqeval.metrics import f1_score

from edad_core.corpus import url_items
from edad_core.download import cached_bytes
from edad_core.hub import export_for_hub
from edad_core.ner_data import read_iob
from edad_core.onnx_export import export_onnx
from edad_core.report import fmt, paper_dataset
from edad_core.tagger import SCHEMES, TAGGER_KEY, Tagger
from edad_core.tagging_speed import measure_folders, speed_frame, speed_note

log = logging.getLogger(__name__)

NER_DATA = ("the MTL-Bioinformatics-2016 copies of the benchmarks (Crichton et al. 2017, BMC Bioinformatics 18:368; "
            "https://github.com/cambridgeltl/MTL-Bioinformatics-2016), licence CC BY 4.0")
CORPUS_PAPERS = {
    "BC5CDR": "Li et al. 2016, BioCreative V CDR task corpus: a resource for chemical disease relation extraction, "
              "Database 2016:baw068",
    "BioNLP09": "Kim et al. 2009, Overview of BioNLP'09 shared task on event extraction, BioNLP 2009 Workshop",
    "NCBI-disease": "Dogan, Leaman & Lu 2014, NCBI disease corpus: a resource for disease name recognition and "
                    "concept normalization, J Biomed Inform 47:1-10",
}
PMC = ("PubMed Central Open Access articles (the PMC Article Datasets on AWS), each under its own licence ({licenses}); "
       "this model was made with publications available through the PMC Open Access Subset, courtesy of the "
       "U.S. National Library of Medicine (NLM)")
URL_SOURCES = {
    "UCDenver-ccp/CRAFT": "CRAFT corpus articles (PMC Open Access full texts; each article's licence is in its "
                          "<PMID>.copyright file, mostly CC BY)",
    "PLOS/allofplos": "PLOS articles from allofplos (each under the licence in its <permissions>: CC BY or public "
                      "domain)",
}


def median_seed(results: list[dict]) -> int:
    """The seed whose devel entity F1 is the median (the lower median for an even count; ties by seed)."""
    ranked = sorted(results, key=lambda r: (r["metrics"]["devel"]["entity"]["f1"], r["seed"]))
    return int(ranked[(len(ranked) - 1) // 2]["seed"])


SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")  # what edad_core.corpus.BOUNDARY needs before its whitespace


def raw_test_text(sentences: list[list[str]]) -> tuple[str, list[list[tuple[int, int]]]]:
    """The sentences as text (see the module docstring) and every word's [start, end) in it."""
    lines, offsets, pos = [], [], 0
    for words in sentences:
        line, spans = "", []
        for word in words:
            if line and not SENTENCE_END.search(line[-8:]):
                line += " "
            spans.append((pos + len(line), pos + len(line) + len(word)))
            line += word
        lines.append(line + "\n")
        offsets.append(spans)
        pos += len(line) + 1
    return "".join(lines), offsets


def check_tagger(tagger: Tagger, gold: list, test: tuple[str, list], predictions_conll) -> dict:
    """Tag the test text end to end (gold: read_iob of test.tsv; test: its raw_test_text); compare with the run's
    predictions (module docstring)."""
    run = [[line.split(" ")[2] for line in block.splitlines()]
           for block in Path(predictions_conll).read_text().split("\n\n") if block.strip()]
    text, offsets = test
    doc = next(tagger.tag([{"id": "test", "text": text}]))
    ours = [[t for _, _, t in sentence] for sentence in doc["sentences"]]
    same_split = [[(s, e) for s, e, _ in sentence] for sentence in doc["sentences"]] == offsets
    scheme = None if tagger.mode is None else SCHEMES[tagger.scheme]
    gold_tags = [t for _, t in gold]

    def differences(a, b):
        return sum(x != y for p, q in zip(a, b) for x, y in zip(p, q)) if same_split else None

    return {
        "sentences": len(gold), "words": sum(len(w) for w, _ in gold), "characters": len(text),
        "same_sentences_and_words": same_split,
        "word_label_differences": differences(doc["word_labels"], run),
        "entity_tag_differences": differences(ours, [tagger_tags(tagger, tags) for tags in run]),
        "run_f1": f1_score(gold_tags, run, mode=tagger.mode, scheme=scheme),
        "tagger_f1": f1_score(gold_tags, ours, mode=tagger.mode, scheme=scheme) if same_split else None,
    }


def speed_documents(speed: dict, *, mirror, cache_dir) -> tuple[list[dict], str]:
    """The first `speed["documents"]` .txt URLs of `speed["urls"]` then `speed["url_file"]` (the corpus's
    '<url> [<sha256>]' lines), as {"id", "text"}: from the download cache, the mirror or the URL
    (edad_core.download.cached_bytes), each checked against its sha256; and what they are, for the card."""
    count = speed["documents"]
    items = [(url, sha256) for url, sha256, fmt in url_items({"key": "export.ner.speed", **speed}) if fmt == "txt"]
    if len(items) < count:
        raise ValueError(f"export.ner.speed.documents: {count}, but export.ner.speed lists {len(items)} .txt URLs")
    docs = [{"id": Path(url).stem, "text": cached_bytes(url, Path(cache_dir), mirror, "sha256", sha256).decode("utf-8")}
            for url, sha256 in items[:count]]
    folder = os.path.commonprefix([url for url, _ in items[:count]]).rpartition("/")[0]
    listed = f"the first .txt URLs of `{speed['url_file']}`" if speed["url_file"] and not speed["urls"] else "URLs"
    return docs, f"{listed}, in {folder}/"


def tagger_tags(tagger: Tagger, tags: list[str]) -> list[str]:
    """IOB2 tags of the entities the tagger decodes from `tags`."""
    out = ["O"] * len(tags)
    for label, first, last in tagger.entities(tags):
        out[first:last] = [f"B-{label}"] + [f"I-{label}"] * (last - first - 1)
    return out


def corpus_licences(sources: list[dict]) -> list[str]:
    out = []
    for s in sources:
        if s["kind"] == "pmc":
            out.append(PMC.format(licenses=", ".join(s.get("licenses", []))))
        elif s["kind"] == "urls":
            urls = s.get("urls") or Path(s["url_file"]).read_text().split()
            known = [text for key, text in URL_SOURCES.items() if any(key in u for u in urls)]
            out += known or [f"{len(urls)} documents from URLs; their licences are their publishers'"]
        else:
            out.append("local files: their licences are their owners'")
    return out


def model_card(*, name: str, model: str, dataset: str, seed: int, summary: pd.DataFrame, datasets: list[str],
               check: dict, speeds: list[dict], speed_source: str, provenance: dict, command: str,
               settings: dict) -> ModelCard:
    """The card: Hub metadata (model-index: test entity and token F1 of every dataset, from summary.csv) and text."""
    row = summary.loc[model]
    seeds = int(row[f"{dataset}:seeds"])
    config, stats = provenance["model_config"], provenance["corpus_stats"]
    types = sorted({label[2:] for label in config["id2label"].values() if label != "O"})
    ext = config.get("ext_vocab_size", 0)
    vocab = (f"{config['vocab_size'] + ext:,} word pieces: the base model's {config['vocab_size']:,} and {ext:,} "
             "domain pieces learnt from the corpus (exBERT's extension)" if ext else
             f"the base model's {config['vocab_size']:,} word pieces")
    evals = [EvalResult(task_type="token-classification", task_name="Named entity recognition",
                        dataset_type=paper_dataset(d), dataset_name=paper_dataset(d), dataset_split="test",
                        metric_type=metric, metric_name=f"{title}, mean over {int(row[f'{d}:seeds'])} seeds",
                        metric_value=float(row[f"{d}:{metric}"]))
             for d in [dataset] for metric, title in (("entity_f1", "test entity F1 (%)"), ("token_f1", "test token macro F1 (%)"))]
    data = ModelCardData(model_name=name, pipeline_tag="token-classification", library_name="transformers",
                         tags=["biomedical", "ner", "edad", "knowledge-distillation"], eval_results=evals,
                         datasets=[paper_dataset(dataset)], base_model=None)
    mode = settings["seqeval_mode"] or "conlleval"

    def cell(d: str, metric: str) -> str:
        return fmt(row[f"{d}:{metric}"], row[f"{d}:{metric}_ci"])

    f1_rows = "\n".join(f"| {paper_dataset(d)} | {cell(d, 'entity_f1')} | {cell(d, 'token_f1')} | "
                        f"{int(row[f'{d}:seeds'])} |" for d in datasets)
    time_h = "" if math.isnan(row.time_h) else f"{row.time_h:.4g} h" + (
        "" if math.isnan(row.time_ci_h) else f" ± {row.time_ci_h:.2g}")
    paper = CORPUS_PAPERS.get(paper_dataset(dataset), paper_dataset(dataset))
    agree = ("every word's label equals the run's" if check["word_label_differences"] == 0
             else f"{check['word_label_differences']} word labels differ from the run's")
    body = f"""
# {name}

A biomedical named-entity tagger for **{paper_dataset(dataset)}** ({", ".join(types)}),
made by the EDAD workflow (Seo & Hwang, 2023, *EDAD: Efficient Domain Adaptive Distillation*): the model
`{model}` fine-tuned on {paper_dataset(dataset)} with seed {seed}, the seed whose devel entity F1 is the median of
the {seeds} seeds.

```python
from transformers import pipeline
ner = pipeline("token-classification", model="{name}", trust_remote_code=True, aggregation_strategy="first")
```

or, with the EDAD package (sentence splitting, the training tokenisation, windows for long sentences):
`edad predict {name} notes.txt -o entities.jsonl`.

## Results (test split, mean ± 95% interval over the seeds)

`{model}` fine-tuned on each dataset (this tagger is its {paper_dataset(dataset)} model):

| dataset | entity F1 (%) | token macro F1 (%) | seeds |
| --- | --- | --- | --- |
{f1_rows}

Entity F1: seqeval, micro-averaged over entity types, mode {mode}, scheme {settings["seqeval_scheme"]} (an entity
counts only with exact boundaries and type). Token macro F1: scikit-learn's macro F1 over the first sub-word of
each word, O counted as a class (one prediction per word; the EDAD authors' own metric scores every piece). The 95% interval
is t(0.975, n-1) * s / sqrt(n) over the n seeds. Fine-tuning: {settings["epochs"]} epochs at lr {settings["lr"]},
batch {settings["batch_size"]}, windows of {settings["max_length"]} pieces.

## Model

- Parameters: {row.tagger_params_m:.1f} M; training time cost (pretraining, as in the paper's tables): {time_h or "n/a"}.
- Teacher (base checkpoint): `{provenance["teacher"]}`; student: {provenance["student"]}.
- Vocabulary: {vocab}.
- Pretraining corpus: {stats["documents"]:,} documents, {stats["tokens"]:,} words ({stats["sentences"]:,} sentences).
- Check: the tagger on the test text ({check["sentences"]} sentences, {check["words"]} words) gives
  {agree}; entity F1 {check["run_f1"] * 100:.2f} in the run, {(check["tagger_f1"] or 0) * 100:.2f} from the
  tagger's entities.

## Speed

{speed_frame(speeds).to_markdown(index=False, disable_numparse=True)}

{speed_note(speeds, speed_source)} The ONNX files lie beside the weights (`edad predict --onnx int8`, no torch
needed); int8 is onnxruntime's dynamic quantisation of the linear layers.

## Licences and attribution

- NER data: {NER_DATA}. Cite the corpus paper: {paper}.
- Pretraining text: {" ".join(c + "." for c in corpus_licences(provenance["sources"]))}
- The teacher's own licence applies to the weights derived from it.

## Made by

```
{command}
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def export_ner(*, result_dir, summary_csv, test_tsv, out_dir, datasets: list[str], provenance: dict, command: str,
               onnx: bool, speed: dict, speed_documents: list[dict]) -> dict:
    """Write the tagger folder `out_dir` from the kept model of one fine-tuning run (result_dir/model): the model
    with its code, the ONNX exports (`onnx`), check.json, speed.json (edad_core.tagging_speed on `speed_documents`,
    `speed`: threads, batch_size, rounds, source) and the card."""
    result_dir = Path(result_dir)
    result = json.loads((result_dir / "result.json").read_text())
    model_dir = result_dir / "model"
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir}: no kept model (the finetune rule keeps it for the exported rows and "
                         "datasets; rerun that job)")
    if onnx and not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        raise ValueError("export.ner.onnx is true, but onnx or onnxruntime is not installed: "
                         "pip install -e '.[onnx]', or set export.ner.onnx: false")
    settings = result["settings"]
    tagger_settings = {"max_length": settings["max_length"], "seqeval_mode": settings["seqeval_mode"],
                       "seqeval_scheme": settings["seqeval_scheme"], "protocol": settings.get("protocol", "standard")}
    summary = pd.read_csv(summary_csv, index_col="model")
    provenance = {**provenance, "model_config": json.loads((model_dir / "config.json").read_text())}
    gold = read_iob(test_tsv)
    test = raw_test_text([w for w, _ in gold])

    def finish(folder: Path) -> dict[str, str]:
        if onnx:
            export_onnx(folder)
        # the run's batch size and threads: its test predictions come back exactly
        tagger = Tagger(folder, device="cpu", batch_size=settings["per_device_batch_size"],
                        threads=provenance["threads"])
        check = check_tagger(tagger, gold, test, result_dir / "predictions-test.conll")
        log.info("check: %s", check)
        if not check["same_sentences_and_words"] or check["word_label_differences"] or check["entity_tag_differences"]:
            log.warning("the tagger differs from the run's predictions: %s", check)
        speeds = measure_folders({result["name"]: folder}, speed_documents, threads=speed["threads"],
                                 batch_size=speed["batch_size"], rounds=speed["rounds"],
                                 test=(test[0], [t for _, t in gold]))
        card = model_card(name=Path(out_dir).name, model=result["name"], dataset=result["dataset"],
                          seed=result["seed"], summary=summary, datasets=datasets, check=check, speeds=speeds,
                          speed_source=speed["source"], provenance=provenance, command=command,
                          settings={**settings, "epochs": result["epochs"], "lr": result["lr"]})
        return {"README.md": str(card), "check.json": json.dumps(check, indent=2) + "\n",
                "speed.json": json.dumps({"source": speed["source"], "seed": result["seed"], "dataset": result["dataset"],
                                          "rows": speeds}, indent=2) + "\n"}

    export_for_hub(model_dir, out_dir, extra_config={TAGGER_KEY: tagger_settings}, finish=finish)
    return json.loads((Path(out_dir) / "check.json").read_text())
