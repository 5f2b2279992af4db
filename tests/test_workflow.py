"""The Snakemake workflow itself: lint, config validation, planning that is the same on every machine, and the whole
DAG on the smoke config (real MiniLM teacher, five CRAFT articles of the mirror, a few steps per training run)."""

import json
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForPreTraining

from conftest import MIRROR, PROJECT, minilm_path
from edad_core.modeling import ExBertForPreTraining, ExBertModel

SMOKE = PROJECT / "config" / "smoke.yaml"
pytestmark = pytest.mark.timeout(1500)  # the smoke DAG (about 60 jobs) runs in the first test that needs it
RUNS = ([f"adapt_{m}" for m in ("biobert", "scibert", "exbert")]
        + [f"gd_{t}" for t in ("bert", "biobert", "scibert", "exbert")]
        + [f"edad_{s}" for s in ("linear", "linear_reverse", "cosine", "cosine_reverse", "same_ratio", "only_da",
                                 "only_dt")])


def snakemake(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "EDAD_MIRROR": str(MIRROR), "HF_HUB_OFFLINE": "1",  # nothing is fetched from the hub
           "HF_HOME": str(workdir / "hf_home"),  # an empty Hugging Face cache
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(PROJECT / "Snakefile"), "--directory", str(workdir),
         "--cores", "2", *args],
        capture_output=True, text=True, env=env, timeout=900)


def target(workdir: Path, path: Path) -> str:
    """Snakemake targets are relative to its working directory."""
    return str(path.relative_to(workdir))


def test_lint_is_clean(tmp_path):
    out = snakemake(tmp_path, "--lint")
    assert out.returncode == 0, out.stderr
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr


def planned_jobs(workdir: Path, *args: str, env: dict | None = None) -> tuple[dict[str, int], str]:
    """Job counts per rule and the printed jobs of a dry run (an empty Hugging Face cache)."""
    out = snakemake(workdir, "-n", *args, env=env)
    assert out.returncode == 0, out.stderr
    table = out.stdout.split("Job stats:")[1].split("total")[0]
    rows = [row.split() for row in table.splitlines()]
    return {row[0]: int(row[1]) for row in rows if row[1:2] and row[1].isdigit()}, out.stdout


def job_list(stdout: str) -> list[tuple[str, str]]:
    """(rule, outputs) of every job a dry run prints, sorted."""
    return sorted(re.findall(r"^rule (\S+):\n(?:    (?!output:).*\n)*    output: (.*)$", stdout, re.MULTILINE))


def test_paper_config_plans_every_run(tmp_path):
    """Offline with an empty cache too: models.fetch_published lets the published checkpoints' jobs download them
    (here they would fail, naming the files), so planning does not depend on the network."""
    counts, _ = planned_jobs(tmp_path)
    assert {k: v for k, v in counts.items() if k != "all"} == {
        "corpus": 1, "ner_data": 3, "vocab_base": 1, "vocab_extended": 1, "vocab_domain": 1, "pretrain_data": 5,
        "vocab_published": 2, "adapt": 3, "distill": 6, "edad": 7,
        # 3 timings of a run whose hours a table reports; Table 4's other schedules have no time column: 1 timing
        "adapt_repeat": 6, "distill_repeat": 12, "edad_repeat": 2,
        # the 19 rows of Tables 1-4 x 3 datasets x 5 seeds are fine-tuned
        "finetune": 19 * 3 * 5, "tables": 1, "table5": 1, "plots": 1, "export_student": 1,
        "export_ner": 6}  # EDAD's student and its exBERT teacher as taggers of each dataset


def test_a_published_checkpoint_at_hand_is_distilled_in_its_own_vocab(tmp_path, minilm):
    mirror = tmp_path / "mirror"  # BioBERT's files where their download URLs put them (the MiniLM stands in)
    biobert = mirror / "huggingface.co" / "dmis-lab" / "biobert-v1.1" / "resolve" / "main"
    biobert.mkdir(parents=True)
    for name in ("config.json", "vocab.txt", "model.safetensors"):
        (biobert / name).symlink_to(minilm / name)
    local_only = tmp_path / "local_only.yaml"
    local_only.write_text("models:\n  fetch_published: false\n")
    counts, jobs = planned_jobs(tmp_path, "--configfile", str(local_only), env={"EDAD_MIRROR": str(mirror)})
    # the rules pass the hub id, the same on every machine; the job finds the mirror's copy (EDAD_MIRROR)
    assert "--base dmis-lab/biobert-v1.1" in jobs
    assert "--name BioBERT --model dmis-lab/biobert-v1.1 --tokenizer=results/vocab/pub_biobert --role teacher" in jobs
    assert "--no-lowercase" in jobs  # with the cased tokenizer vocab_published builds
    assert "--name BioBERT_GD --model results/train/gd_pub_biobert/student" in jobs  # its student: made here
    assert counts["vocab_published"] == 1 and counts["pretrain_data"] == 4  # base, extended, domain, pub_biobert
    assert counts["distill"] == 5 and counts["distill_repeat"] == 10
    assert counts["finetune"] == 17 * 3 * 5 and counts["skipped_model"] == 2  # SciBERT and SciBERT_GD: skipped


def test_the_demo_plans_the_same_jobs_with_or_without_mirror_online_or_offline(tmp_path):
    (tmp_path / "config").symlink_to(PROJECT / "config")  # mini's corpus URL list is relative to the project
    plans = {}
    for mirror, offline in ((MIRROR, ""), (tmp_path / "no_mirror", ""), (tmp_path / "no_mirror", "1")):
        out = snakemake(tmp_path, "-n", "--configfile", str(PROJECT / "config" / "mini.yaml"),
                        "--config", f"mirror={mirror}", env={"HF_HUB_OFFLINE": offline, "EDAD_OFFLINE": offline})
        assert out.returncode == 0, out.stderr[-3000:]
        plans[(mirror, offline)] = job_list(out.stdout)
    first, *others = plans.values()
    assert len(first) > 40 and all(plan == first for plan in others)
    assert any(rule == "finetune" for rule, _ in first) and not any(rule == "vocab_published" for rule, _ in first)


def test_an_empty_finetune_list_fine_tunes_nothing_and_unknown_names_fail(tmp_path):
    overlay = tmp_path / "none.yaml"
    overlay.write_text("finetune:\n  models: []\nexport:\n  ner:\n    rows: []\n")  # an export needs its fine-tuning
    counts, _ = planned_jobs(tmp_path, "--configfile", str(SMOKE), str(overlay))
    assert "finetune" not in counts and "skipped_model" not in counts and counts["adapt"] == 3
    overlay.write_text("finetune:\n  models: [exBERT, EDAD]\n")
    out = snakemake(tmp_path, "-n", "--configfile", str(SMOKE), str(overlay))
    assert out.returncode != 0 and "finetune.models: unknown row(s) ['EDAD']" in out.stdout + out.stderr


def test_task_distilled_rows_plan_their_teachers_distillations_and_table6(tmp_path):
    """Only when task_distill.rows names a student (the paper config plans none: the test above)."""
    overlay = tmp_path / "td.yaml"
    overlay.write_text("task_distill:\n  rows: [EDAD_linear]\n  teacher: exBERT\n")
    counts, jobs = planned_jobs(tmp_path, "--configfile", str(overlay))
    # exBERT's 15 fine-tunings keep their weights (finetune_kept); EDAD_linear_TD's 15 are added to the other 18 rows'
    assert (counts["finetune_kept"], counts["task_distill"], counts["finetune"]) == (15, 15, 18 * 15 + 15)
    assert '"keep_model": true' in jobs and "results/table6.md" in jobs
    # config.yaml exports exBERT too: its export names the kept weights, so weights a temp output deleted are made again
    exports = [block for block in jobs.split("\nrule ")[1:] if block.startswith("export_ner:")]
    teacher = next(block for block in exports if "output: results/export/exBERT-BC5CDR-IOB" in block)
    assert all(f"results/finetune/exBERT/BC5CDR-IOB/seed{s}/model" in teacher for s in range(1, 6))
    assert ("--name EDAD_linear_TD --model results/train/td_EDAD_linear/BC5CDR-IOB/seed3/student --tokenizer= "
            "--role student --dataset BC5CDR-IOB") in jobs
    overlay.write_text("task_distill:\n  rows: [exBERT]\n")
    out = snakemake(tmp_path, "-n", "--configfile", str(overlay))
    assert out.returncode != 0 and "task_distill.rows: ['exBERT'] are not pretrained students" in out.stdout + out.stderr


TEMP_FLAGS = """
import sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.io import is_flagged
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=Path(sys.argv[1]),
                            config_settings=ConfigSettings(configfiles=[Path(p) for p in sys.argv[2:]]))
    print({name: is_flagged(f, "temp") for name, f in workflow._workflow.get_rule("finetune_kept").output.items()})
"""


def test_the_task_distillation_teachers_weights_stay_when_that_row_is_exported(tmp_path):
    """finetune_kept's weights are a temp output (deleted once the distillations read them), unless the teacher
    row is also exported: rule export_ner reads them after the distillations."""
    overlay = tmp_path / "td.yaml"

    def flags(yaml_text):
        overlay.write_text("task_distill:\n  rows: [EDAD_linear]\n  teacher: exBERT\n" + yaml_text)
        out = subprocess.run([sys.executable, "-c", TEMP_FLAGS, str(PROJECT / "Snakefile"), str(overlay)],
                             capture_output=True, text=True, cwd=tmp_path, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout.strip().splitlines()[-1]

    assert flags("export:\n  ner:\n    rows: [EDAD_linear]\n") == "{'result': False, 'model': True}"
    assert flags("") == "{'result': False, 'model': False}"  # config.yaml exports exBERT too


def test_bad_config_is_rejected_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_size: 0\n")
    out = snakemake(tmp_path, "-n", "--configfile", str(bad))
    assert out.returncode != 0
    assert "batch_size" in out.stdout + out.stderr
    bad.write_text("vocab:\n  total_size: 30000\n")  # valid alone, but not base (30522) + ext_size (300)
    out = snakemake(tmp_path, "-n", "--configfile", str(SMOKE), str(bad))
    assert out.returncode != 0
    assert "vocab.total_size (30000) != the vocab of models.teacher.base" in out.stdout + out.stderr


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    out = snakemake(workdir, "--configfile", str(SMOKE))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return workdir, workdir / "results" / "smoke"


def test_smoke_dag_outputs(smoke):
    workdir, results = smoke
    for dataset in ("BC5CDR-IOB", "BioNLP09-IOB", "NCBI-disease-IOB"):
        assert (results / "ner" / dataset / "labels.json").is_file()
    base = (results / "vocab" / "base" / "vocab.txt").read_text().splitlines()
    extended = (results / "vocab" / "extended" / "vocab.txt").read_text().splitlines()
    assert len(base) == 30522 and len(extended) == 30822 and extended[:30522] == base
    assert len(set(extended)) == len(extended)
    for run in RUNS:
        assert (results / "train" / run / "train_summary.json").is_file(), run
        assert (results / "train" / run / "metrics.jsonl").is_file(), run
        assert list((workdir / "work" / "smoke" / "train" / run).glob("checkpoint-*")), run  # keep_final_checkpoint
    for model in ("BERT", "exBERT_GD", "EDAD_linear"):
        for dataset in ("BC5CDR-IOB", "BioNLP09-IOB", "NCBI-disease-IOB"):
            for seed in (1, 2):
                result = json.loads((results / "finetune" / model / dataset / f"seed{seed}" / "result.json").read_text())
                assert (result["name"], result["dataset"], result["seed"]) == (model, dataset, seed)
                assert 0 <= result["metrics"]["test"]["entity"]["f1"] <= 1 and result["train_seconds"] > 0
                assert result["epochs"] == (1 if model == "BERT" else 2)  # smoke's teacher / student epochs
    skipped = json.loads((results / "finetune" / "BioBERT" / "skipped.json").read_text())
    assert skipped["model"] == "BioBERT" and "models.fetch_published is false" in skipped["reason"]
    check = json.loads((results / "export" / "EDAD_linear-BC5CDR-IOB" / "check.json").read_text())
    assert check["same_sentences_and_words"] and check["word_label_differences"] == 0  # the tagger = the run
    kept = [(results / "finetune" / "EDAD_linear" / d / "seed1" / "model").is_dir() for d in ("BC5CDR-IOB", "BioNLP09-IOB")]
    assert kept == [True, False]  # only the exported row x dataset keeps its models


def test_smoke_tables_have_the_papers_layout_and_every_run_filled(smoke):
    """Tables 1-4: the paper's rows in its order and its columns, each Markdown table under its caption; a row
    fine-tuned here (smoke: BERT, exBERT_GD and EDAD_linear, 2 seeds) has every figure with its interval, marked
    n=2; a trained row has its parameters and time cost (one timing run: n=1) and says it was not fine-tuned; a
    hub row offline says it was skipped. Table 5: one filled row per fine-tuned model."""
    import pandas as pd

    from edad_core.report import paper_figures

    _, results = smoke
    paper = paper_figures()
    datasets = ["BC5CDR", "BioNLP09", "NCBI-disease", "Average"]
    figure = re.compile(r"\d+\.\d{2} ± \d+\.\d{2}")
    marked = re.compile(r"\d+\.\d{2} ± \d+\.\d{2} \(n=2\)")  # fewer than 3 seeds: the cell says so
    fine_tuned = {1: {"BERT", "exBERT_GD"}, 2: {"exBERT_GD", "EDAD"}, 3: {"EDAD"}, 4: {"linear"}}
    skipped = {3: {"BioBERT", "SciBERT", "BioBERT_GD", "SciBERT_GD"}}  # hub checkpoints, offline
    for number in (1, 2, 3, 4):
        table = pd.read_csv(results / f"table{number}.csv", keep_default_na=False, dtype=str)
        assert (results / f"table{number}.md").read_text().startswith(f"Table {number} of the paper")
        labels = list(paper.loc[paper.table == number, "model"])
        assert list(table.Model) == labels, number  # smoke configures every row the paper has, and no other
        timing = [] if number == 4 else ["Params (M)", "Params (M), paper", "Time cost (h)", "Time cost (h), paper"]
        per_dataset = [f"{d} {c}" for d in datasets for c in ("entity F1", "token F1", "piece F1", "paper")]
        assert list(table.columns) == ["Model", *timing, *per_dataset, "note"], number
        for row in table.to_dict("records"):
            f1_cells = [row[f"{d} {c}"] for d in datasets for c in ("entity F1", "token F1", "piece F1")]
            assert all(row[f"{d} paper"] for d in datasets), row  # the paper's figure beside ours
            if row["Model"] in fine_tuned[number]:
                assert all(marked.fullmatch(cell) for cell in f1_cells), row
                assert row["note"] == "2 seeds", row
            elif row["Model"] in skipped.get(number, ()):
                assert row["note"].startswith("skipped: ") and not any(f1_cells), row
            else:
                assert row["note"] == "trained, not fine-tuned (finetune.models)" and not any(f1_cells), row
            if timing and row["Model"] not in skipped.get(number, ()):
                assert re.fullmatch(r"\d+\.\d", row["Params (M)"]), row  # counted from the model's config
                if row["Model"] != "BERT":  # one timing run: no interval, n=1
                    assert re.fullmatch(r"\d+\.\d+ \(n=1\)", row["Time cost (h)"]), row
            elif timing:
                assert row["Time cost (h)"] == "" and row["Params (M)"] == "", row  # not made: no figure
    claims = pd.read_csv(results / "claims.csv")
    assert set(claims.claim) == {"C1", "C2", "C3"} and (claims[claims.claim == "C1"].n == 2).all()
    assert (results / "claims.md").read_text().count("- **C") == 3
    table5 = pd.read_csv(results / "table5.csv", keep_default_na=False, dtype=str)
    assert list(table5.Model) == ["BERT", "exBERT_GD", "EDAD_linear"]
    assert list(table5.columns) == ["Model", "Params (M)", "Size (MB)", "Type", "Sentences/s (CPU)",
                                    "Average entity F1"]
    assert all(figure.fullmatch(f1) for f1 in table5["Average entity F1"])
    assert all(float(v) > 0 for column in ("Params (M)", "Size (MB)", "Sentences/s (CPU)") for v in table5[column])
    tagging = pd.read_csv(results / "table5_tagging.csv", keep_default_na=False, dtype=str)  # the export's backends
    assert list(tagging["Tagging with"]) == ["edad predict, PyTorch fp32", "edad predict --onnx fp32",
                                             "edad predict --onnx int8", "transformers pipeline, PyTorch fp32"]
    assert set(tagging.Model) == {"EDAD_linear"} and all(re.fullmatch(r"\d+\.\d\d", f) for f in tagging["Test entity F1"])


def test_a_timing_repeat_saves_no_model_and_no_checkpoint(smoke, tmp_path):
    workdir, results = smoke
    overlay = tmp_path / "repeats.yaml"
    overlay.write_text("train:\n  timing_repeats: 2\n")
    repeat = results / "timing" / "edad_linear" / "repeat1"
    out = snakemake(workdir, target(workdir, repeat / "train_summary.json"), "--configfile", str(SMOKE), str(overlay))
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads((repeat / "train_summary.json").read_text())["steps"] == 3
    assert not [p for p in repeat.iterdir() if p.is_dir()]
    assert not list((workdir / "work" / "smoke" / "timing" / "edad_linear" / "repeat1").glob("checkpoint-*"))


def test_smoke_models_load_and_exbert_originals_stay_frozen(smoke):
    _, results = smoke
    student = AutoModel.from_pretrained(results / "train" / "gd_exbert" / "student")
    assert isinstance(student, ExBertModel) and student.config.ext_vocab_size == 300
    teacher = AutoModelForPreTraining.from_pretrained(results / "train" / "edad_linear" / "teacher")
    assert isinstance(teacher, ExBertForPreTraining)
    original = load_file(minilm_path() / "model.safetensors")
    adapted = teacher.bert.state_dict()
    for name, tensor in original.items():
        if name in adapted:
            assert torch.equal(adapted[name], tensor), name
    biobert = AutoModelForPreTraining.from_pretrained(results / "train" / "adapt_biobert" / "teacher")
    moved = biobert.bert.embeddings.LayerNorm.weight
    assert not torch.equal(moved, original["embeddings.LayerNorm.weight"])


def test_rerun_after_lost_outputs_resumes_from_checkpoint(smoke):
    workdir, results = smoke
    run = results / "train" / "edad_linear"
    before = load_file(run / "student" / "model.safetensors")
    for item in (run / "train_summary.json", run / "student" / "model.safetensors"):
        item.unlink()  # as Snakemake does with the outputs of a failed job; the work folder stays
    out = snakemake(workdir, target(workdir, run / "train_summary.json"), "--configfile", str(SMOKE))
    assert out.returncode == 0, out.stderr[-3000:]
    log = (results / "logs" / "train" / "edad_linear.log").read_text()
    assert "resuming from" in log
    after = load_file(run / "student" / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    again = snakemake(workdir, target(workdir, run / "train_summary.json"), "--configfile", str(SMOKE))
    assert "Nothing to be done" in again.stdout + again.stderr


def test_changed_settings_rerun_from_scratch(smoke, tmp_path):
    workdir, results = smoke
    overlay = tmp_path / "lr.yaml"
    overlay.write_text("train:\n  edad:\n    lr: 2.0e-4\n")
    summary = results / "train" / "edad_only_dt" / "train_summary.json"
    out = snakemake(workdir, target(workdir, summary), "--configfile", str(SMOKE), str(overlay))
    assert out.returncode == 0, out.stderr[-3000:]
    log = (results / "logs" / "train" / "edad_only_dt.log").read_text()
    assert "starting over" in log and "resuming from" not in log
    assert "(train.lr: 0.0001 -> 0.0002)" in log  # the changed key is named, and only it


@pytest.mark.parametrize("run", ["edad_only_da", "gd_exbert"])
def test_training_rules_run_ddp_with_two_gloo_processes(smoke, tmp_path, run):
    workdir, results = smoke
    overlay = tmp_path / "ddp.yaml"
    overlay.write_text("train:\n  processes: 2\n  edad:\n    max_steps: 4\n  distill:\n    max_steps: 4\n")
    summary_file = results / "train" / run / "train_summary.json"
    out = snakemake(workdir, target(workdir, summary_file), "--configfile", str(SMOKE), str(overlay))
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(summary_file.read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4 and summary["grad_accum_steps"] == 1


def test_paths_with_spaces_and_shell_syntax_reach_rules_quoted(tmp_path):
    workdir = tmp_path / "clone dir"  # a folder with a space, and config values with shell syntax
    workdir.mkdir()
    overlay = workdir / "overlay.yaml"
    overlay.write_text('results: "out dir/$(touch PWNED)"\nwork: "w $(touch PWNED)"\n')
    out = snakemake(workdir, "out dir/$(touch PWNED)/vocab/base/vocab.txt", "--configfile", str(SMOKE), str(overlay))
    assert out.returncode == 0, out.stderr[-3000:]
    assert (workdir / "out dir" / "$(touch PWNED)" / "vocab" / "base" / "vocab.txt").is_file()
    assert not list(tmp_path.rglob("PWNED"))  # nothing was executed


def test_a_users_ner_dataset_runs_through_the_rule(tmp_path):
    for split in ("train", "devel", "test"):  # CoNLL-2003 layout: token, POS, chunk, tag
        (tmp_path / f"{split}.txt").write_text("Aspirin NN B-NP B-Chem\ncures VBZ B-VP O\npain NN B-NP B-Dis\n\n")
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("ner:\n  datasets:\n    - BC5CDR-IOB\n    - {name: Mine, " + ", ".join(
        f"{s}: {tmp_path / f'{s}.txt'}" for s in ("train", "devel", "test")) + "}\n")
    out = snakemake(tmp_path, "results/smoke/ner/Mine/labels.json", "--configfile", str(SMOKE), str(overlay))
    assert out.returncode == 0, out.stderr[-3000:]
    labels = json.loads((tmp_path / "results/smoke/ner/Mine/labels.json").read_text())
    assert labels["label_names"] == ["O", "B-Chem", "I-Chem", "B-Dis", "I-Dis"]


def test_every_shell_interpolation_is_quoted():
    """{...} in a rule's shell string is quoted with :q, except the launcher (a fixed command built from an
    integer) and {threads}."""
    unquoted = []
    for rules in (PROJECT / "rules").glob("*.smk"):
        for shell in re.findall(r"shell:\s*((?:\s*\"[^\"]*\")+)", rules.read_text()):
            unquoted += [f"{rules.name}: {m}" for m in re.findall(r"\{[^{}]+\}", shell)
                         if not m.endswith(":q}") and m not in ("{threads}", "{params.launch}")]
    assert not unquoted, unquoted


def test_slurm_profile_plans_without_a_cluster(tmp_path, monkeypatch):
    """profiles/slurm: the paper run plans (dry run, no sbatch) with partitions/account from the environment and
    each training rule on a whole 4-GPU node."""
    monkeypatch.setenv("EDAD_SLURM_ACCOUNT", "acct1")
    monkeypatch.setenv("EDAD_SLURM_GPU_PARTITION", "gpupart")
    monkeypatch.setenv("EDAD_SLURM_CPU_PARTITION", "cpupart")
    out = snakemake(tmp_path, "-n", "--profile", str(PROJECT / "profiles" / "slurm"), "--workflow-profile", "none")
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = {}
    for block in out.stdout.split("\nrule ")[1:]:
        resources = re.search(r"resources: (.*)", block)
        jobs.setdefault(block.split(":")[0], resources.group(1) if resources else "")
    assert "slurm_partition=gpupart" in jobs["adapt"] and "gpu=4" in jobs["adapt"] and "cpus_per_gpu=8" in jobs["edad"]
    assert "slurm_account=acct1" in jobs["corpus"] and "slurm_partition=cpupart" in jobs["corpus"]
    assert "runtime=2880" in jobs["adapt"] and "tasks" not in jobs["distill"]


@pytest.mark.parametrize("mini", [False, True])
def test_the_paper_profile_plans_the_authors_ner_protocol(tmp_path, mini):
    """config.yaml fine-tunes as Finetuning_NER.py (docs/design.md decision 15), the mini demo as decision 7."""
    (tmp_path / "no_mirror.yaml").write_text("mirror: null\n")  # mini's ../shared/mirror: EDAD_MIRROR here
    profile = ["--configfile", str(PROJECT / "config" / "mini.yaml"), str(tmp_path / "no_mirror.yaml")] if mini else []
    out = snakemake(tmp_path, "-n", "-p", *profile, "--",
                    f"results{'/mini' if mini else ''}/finetune/BERT/BC5CDR-IOB/seed1/result.json")
    assert out.returncode == 0, out.stdout[-3000:]
    settings = json.loads(re.search(r"--settings '([^']*)'", out.stdout).group(1))
    assert (settings["protocol"], settings["max_length"], settings["group_by_length"]) == (
        ("standard", 128, True) if mini else ("authors", 256, False))
