"""Task-specific distillation, TinyBERT's second stage (beyond the paper; docs/design.md decision 17):

    summary = run_task_distill(run, data_dir="results/ner/BC5CDR-IOB", teacher_dir=..., student_dir=...,
                               output_dir=..., work_dir=..., corpus=None)

A teacher fine-tuned on one NER dataset (an ExBertForTokenClassification folder, `finetune.keep_model`) teaches
a pretrained student (a GD or EDAD student folder) on that dataset's training windows, in TinyBERT's two phases
(task_distill.py of huawei-noah/Pretrained-Language-Model), each a run of the engine:

1. ``intermediate``: the embedding, hidden-state and attention terms of general distillation: the same
   DistillationStudent and TinyBertLoss (edad_core.stages / edad_core.losses), with a fresh projection (GD
   does not keep its own); constant learning rate, as TinyBERT's (schedule "none").
2. ``prediction``: soft cross-entropy between the student's and the teacher's token logits at temperature T over
   the labelled pieces (`prediction_loss`); linear warmup and decay, as TinyBERT's.

The student leaves as a token classifier (its head trained in phase 2) with its tokenizer, for the finetune rule.
Optional unlabelled in-domain sentences (`unlabelled_sentences` of the corpus) join the training windows; their
words' first pieces are labelled by the teacher's soft predictions (no gold label is used in either phase).
`run` (rules/task_distill.smk): {"stage": "task_distill", "row", "dataset", "seed", "settings": {...}}; the
settings are config task_distill plus the training choices (optimizer, clipping, precision) of config train.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from edad_core.checkpointing import claim_work_dir, tokenizer_sha256, weights_sha256
from edad_core.engine import Engine, TrainConfig
from edad_core.files import atomic_dir, atomic_write_bytes, atomic_write_json, sha256_file
from edad_core.losses import distilled_teacher_layers
from edad_core.modeling import ExBertForTokenClassification
from edad_core.ner import TokenDataset, collate, encode, load_model
from edad_core.ner_data import read_iob
from edad_core.stages import DistillationStudent

PHASES = ("intermediate", "prediction")
# TinyBERT's task_distill.py: lr schedule per phase (BertAdam schedule "none", then "warmup_linear")
PHASE_SCHEDULES = {"intermediate": "constant", "prediction": "linear_warmup"}


def prediction_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """TinyBERT's soft cross-entropy -sum_c softmax(t/T)_c log softmax(s/T)_c, averaged over the labelled pieces
    (labels != -100), minus the teacher's entropy (a constant: the same gradients, and 0 when the logits are
    equal), i.e. KL(teacher || student) at temperature T. TinyBERT averages over classes too (a factor 1/C) and
    does not scale by T^2; neither do we for T (its default T is 1)."""
    keep = labels != -100
    student = student_logits[keep].float() / temperature
    teacher = teacher_logits[keep].detach().float() / temperature
    if student.numel() == 0:
        return student.sum() * 0.0  # a batch without labelled pieces: zero, not the NaN of an empty mean
    kl = F.kl_div(student.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="none")
    return kl.sum(-1).mean()


def _with_segments(batch: dict) -> dict:
    return dict(batch, token_type_ids=torch.zeros_like(batch["input_ids"]))


class IntermediateStep:
    """Phase 1: the GD terms between the student's encoder and the teacher's (no gradient, eval mode)."""

    def __init__(self, teacher_layers: list[int]):
        self.teacher_layers = teacher_layers

    def __call__(self, models, batch, ctx):
        batch = _with_segments(batch)
        with torch.no_grad():
            teacher_out = models["teacher"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                            token_type_ids=batch["token_type_ids"], output_hidden_states=True,
                                            output_attention_scores=self.teacher_layers)
        parts = models["student"](batch, teacher_out)
        return {"student": parts["loss"]}, {f"student_{k}": v.detach() for k, v in parts.items() if k != "loss"}


class PredictionStep:
    """Phase 2: the student's token logits against the teacher's at temperature T."""

    def __init__(self, temperature: float):
        self.temperature = temperature

    def __call__(self, models, batch, ctx):
        with torch.no_grad():
            teacher_logits = models["teacher"](input_ids=batch["input_ids"],
                                               attention_mask=batch["attention_mask"]).logits
        student_logits = models["student"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return {"student": prediction_loss(student_logits, teacher_logits, batch["labels"], self.temperature)}, {}


def unlabelled_sentences(corpus, n: int, seed: int = 0) -> list[list[str]]:
    """`n` sentences (whitespace words) drawn uniformly from the corpus (one sentence per line), in one streaming
    pass (reservoir sampling): the same sentences for every seed of a run."""
    rng, sample = random.Random(seed), []
    with open(corpus, encoding="utf-8") as f:
        for i, line in enumerate(line for line in f if line.strip()):
            if len(sample) < n:
                sample.append(line)
            elif (j := rng.randrange(i + 1)) < n:
                sample[j] = line
    if len(sample) < n:
        raise ValueError(f"{corpus}: {len(sample)} sentences, fewer than task_distill.unlabelled_sentences = {n}")
    return [line.split() for line in sample]


def load_teacher(teacher_dir, labels: list[str]) -> ExBertForTokenClassification:
    teacher = ExBertForTokenClassification.from_pretrained(teacher_dir)
    theirs = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    if theirs != labels:
        raise ValueError(f"{teacher_dir}: the teacher's labels {theirs} are not the dataset's {labels}: it was "
                         "fine-tuned on another dataset")
    return teacher


def check_same_vocab(teacher_dir, student_dir) -> None:
    """Distillation compares the two models piece by piece: they must tokenise alike."""
    if AutoTokenizer.from_pretrained(teacher_dir).get_vocab() != AutoTokenizer.from_pretrained(student_dir).get_vocab():
        raise ValueError(f"the tokenizers of {teacher_dir} and {student_dir} differ: a task-distillation teacher and "
                         "its student must share one vocabulary (task_distill.teacher and task_distill.rows)")


def copy_tokenizer(model_dir, folder: Path) -> None:
    """The tokenizer files of a model folder (all but its config and weights), as the stages save them."""
    for item in Path(model_dir).iterdir():
        if item.is_file() and item.name != "config.json" and item.suffix != ".safetensors":
            shutil.copy2(item, folder / item.name)


def _train_config(settings: dict, phase: str, seed: int, folder: Path) -> TrainConfig:
    keys = ("batch_size", "per_device_batch_size", "warmup_ratio", "weight_decay", "optimizer", "adam_eps",
            "max_grad_norm", "clip_mode", "precision", "checkpoint_every", "log_every", "group_by_length")
    return TrainConfig(output_dir=str(folder), work_dir=str(folder / "work"), lr=settings["lr"][phase],
                       epochs=settings["epochs"][phase], lr_schedule=PHASE_SCHEDULES[phase], seed=seed,
                       keep_final_checkpoint=False, **{k: settings[k] for k in keys})


def _phase_models(phase: str, student, teacher, settings: dict):
    if phase == "intermediate":
        layers = distilled_teacher_layers(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
        return {"teacher": teacher.bert, "student": DistillationStudent(student.bert, teacher.config)}, \
            IntermediateStep(layers)
    return {"teacher": teacher, "student": student}, PredictionStep(settings["temperature"])


def run_task_distill(run: dict, *, data_dir, teacher_dir, student_dir, output_dir, work_dir, corpus=None,
                     teacher_seconds: float = 0.0) -> dict:
    """Both phases, one process (the rule runs it as a fine-tuning job). Each phase resumes from its own
    checkpoints (the engine claims `<work_dir>/<phase>/work` with the phase's fingerprint) and a finished one (its
    train_summary.json, written last) is not run again; `work_dir` itself is claimed by the run description and
    the inputs' checksums, so a changed input removes the finished phases too. Writes output_dir/student (the tagger with its
    tokenizer), metrics-<phase>.jsonl and train_summary.json (train_seconds and train_cpu_seconds of both phases,
    each phase's own summary, and `teacher_finetune_seconds`: the teacher's fine-tuning, which the row's time cost
    adds)."""
    settings, seed, work_dir, output_dir = run["settings"], run["seed"], Path(work_dir), Path(output_dir)
    labels = json.loads((Path(data_dir) / "labels.json").read_text())["label_names"]
    index = {l: i for i, l in enumerate(labels)}
    check_same_vocab(teacher_dir, student_dir)
    use_corpus = settings["unlabelled_sentences"] > 0
    inputs = {"run": {k: v for k, v in run.items() if k != "settings"}, "teacher": weights_sha256(str(teacher_dir)),
              "tokenizer": tokenizer_sha256(student_dir), "data": sha256_file(Path(data_dir, "train.tsv")),
              "labels": labels, "corpus": sha256_file(corpus) if use_corpus else None,
              "settings": {k: v for k, v in settings.items() if k not in ("log_every", "checkpoint_every")}}
    # the whole folder, finished phases included, belongs to these inputs: another run starts over
    claim_work_dir(work_dir, {**inputs, "student": weights_sha256(str(student_dir))})
    teacher = load_teacher(teacher_dir, labels)
    train = read_iob(Path(data_dir) / "train.tsv")
    sentences = [words for words, _ in train]
    tags = [[index[t] for t in sentence_tags] for _, sentence_tags in train]
    if use_corpus:  # tags 0 only mark the words' first pieces: the teacher labels them
        extra = unlabelled_sentences(corpus, settings["unlabelled_sentences"])
        sentences, tags = sentences + extra, tags + [[0] * len(words) for words in extra]

    summaries, source = {}, Path(student_dir)
    for phase in PHASES:
        folder = work_dir / phase
        if not (folder / "train_summary.json").exists():
            torch.manual_seed(seed)  # the fresh head (phase 1) and projection follow the seed
            student, tokenizer = load_model(str(source), labels)
            dataset = TokenDataset(encode(tokenizer, sentences, settings["max_length"]), tags)
            models, step = _phase_models(phase, student, teacher, settings)
            pad_id = tokenizer.pad_token_id

            def save():  # the whole tagger: phase 1 trains its encoder inside the objective
                with atomic_dir(folder / "student") as tmp:
                    student.save_pretrained(tmp)
                    copy_tokenizer(student_dir, tmp)

            fingerprint = {**inputs, "phase": phase, "source": weights_sha256(str(source))}
            with Engine(_train_config(settings, phase, seed, folder), models, ["student"], dataset,
                        lambda b: collate(b, pad_id), step, lengths=dataset.lengths, fingerprint=fingerprint) as engine:
                engine.train(save_models=save)
        summaries[phase] = json.loads((folder / "train_summary.json").read_text())
        source = folder / "student"
    with atomic_dir(output_dir / "student") as tmp:
        for item in source.iterdir():
            shutil.copy2(item, tmp / item.name)
    for phase in PHASES:
        atomic_write_bytes(output_dir / f"metrics-{phase}.jsonl", (work_dir / phase / "metrics.jsonl").read_bytes())
    summary = {"train_seconds": sum(s["train_seconds"] for s in summaries.values()),
               "train_cpu_seconds": sum(s["train_cpu_seconds"] for s in summaries.values()),
               "teacher_finetune_seconds": teacher_seconds, "phases": summaries}
    atomic_write_json(output_dir / "train_summary.json", summary, indent=2)
    for phase in PHASES:  # the finished phases' taggers (44 MB each at mini size) are in output_dir now: disk
        shutil.rmtree(work_dir / phase)
    return summary
