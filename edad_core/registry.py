"""The models of Tables 1-4, named as the paper names them: the one place that says which row goes in which table
under which label, and that the rules (what to fine-tune, from where, for how many epochs) and the tables (which
training runs make a row's time cost) read.

    rows = build_registry(config)          # {name: ModelRow}, in the paper's order
    rows["exBERT_GD"].source               # 'train/gd_exbert/student' (under config results) or a hub id
    rows["exBERT_GD"].train_runs           # ('adapt_exbert', 'gd_exbert'): their train_seconds add up
    rows["EDAD_linear"].tables             # {2: 'EDAD', 3: 'EDAD', 4: 'linear'}: table -> row label
    table_layout(rows, 2)                  # [('exBERT_GD', 'exBERT_GD'), ('EDAD', 'EDAD_linear')]: the paper's order
    timed_runs(rows)                       # the runs whose hours a table reports (they get timing repeats)

Rows follow the config: a teacher adaptation method, distillation teacher or alpha schedule that is not
configured has no row. EDAD students are `EDAD_<schedule>` (Table 4's rows, labelled by schedule; the student of
`report.edad_schedule` is Tables 2-3's "EDAD"), their jointly trained teachers `EDAD_<schedule>_teacher`
(fine-tuned only when asked for). A student named in `task_distill.rows` also gets a row `<student>_TD`,
task-distilled per dataset and seed (its source names them), beside its student in Table 6 (beyond the paper;
edad_core.task_distill). The published BioBERT and SciBERT (Table 3) are hub checkpoints: their rows carry
the published adaptation hours, and their GD students are distilled on the corpus tokenised with the teacher's own
vocabulary (distill teacher `pub_biobert` / `pub_scibert`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources

import pandas as pd

from edad_core.download import DownloadError, local_model

ADAPTED = {"biobert": "oiBioBERT", "scibert": "oiSciBERT", "exbert": "exBERT"}
PUBLISHED = {"BioBERT": "pub_biobert", "SciBERT": "pub_scibert"}  # row name -> distill teacher wildcard
PAPER_TABLES = "paper_tables.csv"  # edad_core/data/: the paper's Tables 1-4 (source: docs/design.md §5)
TABLES = (1, 2, 3, 4)  # the paper's tables the report lays out
COST_TABLES = (1, 2, 3, 6)  # the tables with parameter and time-cost columns (Table 4 has F1 only; 6: ours)


@dataclass(frozen=True)
class ModelRow:
    name: str
    role: str  # teacher | student: sets the fine-tuning epochs
    source: str  # a workflow folder relative to config `results`, or a hub id / local folder / pkg: spec
    train_runs: tuple[str, ...]  # runs under results/train whose train_seconds add up to the time cost
    tables: dict[int, str] = field(default_factory=dict)  # table number -> the row's label there
    published_hours: float | None = None  # a published checkpoint's adaptation time (exBERT's paper)
    hub: str | None = None  # a published checkpoint it needs, which may not be had (then the row is skipped)
    teacher: str | None = None  # a student's teacher row: its width sets TinyBERT's projection (parameter count)
    task_runs: tuple[str, ...] = ()  # runs made per dataset and seed (results/train/<run>/<dataset>/seed<k>): the
    # mean of their train_seconds adds to the time cost

    def folder(self, dataset: str, seed: int | str) -> str:
        """`source` for one fine-tuning job: a task-distilled row's source names its dataset and seed."""
        return self.source.format(dataset=dataset, seed=seed)

    @property
    def workflow_made(self) -> bool:
        """Made by its training runs here (the last one writes `source`), even when it needs a published teacher."""
        return bool(self.train_runs)


def build_registry(config: dict) -> dict[str, ModelRow]:
    train, models = config["train"], config["models"]
    methods, teachers, schedules = train["adapt"]["methods"], train["distill"]["teachers"], train["edad"]["schedules"]
    # the base checkpoint is never skipped: every training run needs it
    rows = [ModelRow("BERT", "teacher", models["teacher"]["base"], (), {1: "BERT"})]
    rows += [ModelRow(ADAPTED[m], "teacher", f"train/adapt_{m}/teacher", (f"adapt_{m}",), {1: ADAPTED[m]})
             for m in methods]
    for teacher in teachers:
        if teacher == "bert":
            rows.append(ModelRow("BERT_GD", "student", "train/gd_bert/student", ("gd_bert",), {1: "BERT_GD"},
                                 teacher="BERT"))
        elif teacher in ADAPTED:
            name = f"{ADAPTED[teacher]}_GD"
            runs = (f"adapt_{teacher}", f"gd_{teacher}")
            tables = {1: name, 2: name} if teacher == "exbert" else {1: name}
            rows.append(ModelRow(name, "student", f"train/gd_{teacher}/student", runs, tables,
                                 teacher=ADAPTED[teacher]))
    for name, spec in models.get("published", {}).items():
        rows.append(ModelRow(name, "teacher", spec["hub"], (), {3: name}, spec["adaptation_hours"], spec["hub"]))
        gd = PUBLISHED[name]
        if gd in teachers:
            rows.append(ModelRow(f"{name}_GD", "student", f"train/gd_{gd}/student", (f"gd_{gd}",), {3: f"{name}_GD"},
                                 spec["adaptation_hours"], spec["hub"], teacher=name))
    paper_schedule = config["report"]["edad_schedule"]
    for s in schedules:
        tables = {2: "EDAD", 3: "EDAD", 4: s} if s == paper_schedule else {4: s}
        rows.append(ModelRow(f"EDAD_{s}", "student", f"train/edad_{s}/student", (f"edad_{s}",), tables,
                             teacher=f"EDAD_{s}_teacher"))
        rows.append(ModelRow(f"EDAD_{s}_teacher", "teacher", f"train/edad_{s}/teacher", (f"edad_{s}",)))
    return task_distilled({row.name: row for row in rows}, config.get("task_distill", {}))


TASK_DISTILLED = "_TD"
TASK_TABLE = 6  # beyond the paper: each task-distilled row beside its student


def task_distill_students(registry: dict[str, ModelRow], rows: list[str]) -> list[str]:
    """The students of config task_distill.rows; a name that is not a pretrained student (a `_GD` or `EDAD_*`
    row of the registry) is an error naming the key."""
    students = [n for n, r in registry.items() if r.role == "student" and r.workflow_made]
    if bad := [n for n in rows if n not in students]:
        raise ValueError(f"task_distill.rows: {bad} are not pretrained students of this config; choose among "
                         f"{students}")
    return rows


def task_distilled(registry: dict[str, ModelRow], settings: dict) -> dict[str, ModelRow]:
    """The registry plus a `<student>_TD` row after each student of task_distill.rows, both in Table 6 (the
    student keeps its other tables). The _TD row is its student (runs, teacher) task-distilled per dataset and
    seed; its time cost adds the mean over datasets and seeds of the teacher's fine-tuning and the task
    distillation (run `td_<student>`)."""
    students = task_distill_students(registry, settings.get("rows") or [])
    teachers = [n for n, r in registry.items() if r.role == "teacher"]
    if students and settings["teacher"] not in teachers:
        raise ValueError(f"task_distill.teacher: {settings['teacher']!r} is not a teacher row of this config; "
                         f"choose among {teachers}")
    out = {}
    for name, row in registry.items():
        if name not in students:
            out[name] = row
            continue
        td = name + TASK_DISTILLED
        out[name] = dataclasses.replace(row, tables={**row.tables, TASK_TABLE: name})
        out[td] = dataclasses.replace(row, name=td, source=f"train/td_{name}/{{dataset}}/seed{{seed}}/student",
                                      tables={TASK_TABLE: td}, task_runs=(f"td_{name}",))
    return out


def paper_figures() -> pd.DataFrame:
    """The paper's Tables 1-4 (edad_core/data/paper_tables.csv): one row per table and row label."""
    with resources.files("edad_core.data").joinpath(PAPER_TABLES).open() as f:
        return pd.read_csv(f)


def table_layout(rows: dict[str, ModelRow], number: int) -> list[tuple[str, str | None]]:
    """(row label, model name or None) of table `number`: the paper's rows in its order (None: a row the config
    does not make), then rows of ours the paper does not have."""
    ours = {row.tables[number]: name for name, row in rows.items() if number in row.tables}
    paper = paper_figures()
    labels = list(paper.loc[paper.table == number, "model"])
    return [(label, ours.get(label)) for label in labels] + [(l, m) for l, m in ours.items() if l not in labels]


def timed_runs(rows: dict[str, ModelRow]) -> list[str]:
    """The training runs whose hours a table reports (a row of a cost table): the runs that need timing repeats."""
    runs = [r for row in rows.values() if any(n in COST_TABLES for n in row.tables) for r in row.train_runs]
    return list(dict.fromkeys(runs))


def model_source(row: ModelRow, results: str, dataset: str | None = None, seed: int | str | None = None) -> str:
    """Where a row's model is read: its folder under `results` when the workflow makes it (a task-distilled row's
    for one `dataset` and `seed`: ModelRow.folder), else its spec (hub id, folder or pkg:), which the job turns into
    a local folder (edad_core.download.resolve_model: mirror, Hugging Face cache, hub). Never a machine's mirror
    path: the rules' params are the same on every machine."""
    if not row.workflow_made:
        return row.source
    return f"{results}/{row.source if dataset is None else row.folder(dataset, seed)}"


def distill_teacher_row(teacher: str) -> str:
    """The row of a GD teacher (config train.distill.teachers): bert, an adaptation method, or pub_*."""
    rows = {"bert": "BERT", **ADAPTED, **{gd: name for name, gd in PUBLISHED.items()}}
    return rows[teacher]


def unavailable_reason(spec: str, fetch_published: bool, mirror: str | None = None) -> str | None:
    """Why the published checkpoint `spec` is skipped, or None when it is used; decided without the network, so
    that planning is the same online and offline: it is used when a local copy exists (a folder, pkg:, the mirror,
    the Hugging Face cache) or when config models.fetch_published lets its jobs download it."""
    try:
        if local_model(spec, mirror) is not None or fetch_published:
            return None
    except DownloadError as err:
        return str(err)
    return f"{spec}: in neither the mirror nor the Hugging Face cache, and models.fetch_published is false"
