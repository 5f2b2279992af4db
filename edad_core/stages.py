"""The three training stages on the one engine (docs/design.md §1-2):

    summary = run_training(run, data_dir=..., tokenizer_dir=..., output_dir=..., work_dir=...)   # `run`: see there

- ``adapt``: continue MLM + NSP on the domain corpus. ``biobert`` = all weights of the base BERT (same vocab),
  ``scibert`` = BERT-base shape from random init with the domain-only vocab, ``exbert`` = base BERT plus the
  extension (extended vocab), originals frozen.
- ``distill``: TinyBERT general distillation from a teacher (no grad; in train mode, dropout on, as TinyBERT's
  code runs it, with train.frozen_mode "train") into a randomly initialised student, extended when the teacher is.
- ``edad``: teacher adaptation and distillation in the same step on the same batch; one teacher forward feeds
  both the teacher's MLM + NSP loss and the student's targets (taken before the teacher's update). Student loss
  ``(1 - alpha) * (MLM + NSP) + alpha * L_Tiny`` with alpha from a named schedule.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from transformers import AutoConfig, BertConfig

from edad_core.checkpointing import tokenizer_sha256, weights_sha256
from edad_core.download import resolve_model
from edad_core.engine import Engine, TrainConfig
from edad_core.files import atomic_dir
from edad_core.losses import TinyBertLoss, distilled_teacher_layers, edad_student_loss, mlm_nsp_loss
from edad_core.modeling import ExBertConfig, ExBertForPreTraining, ExBertModel
from edad_core.pretrain_data import MlmMasker, PretrainingDataset, pad_collate
from edad_core.schedules import SCHEDULES, alpha

ADAPT_METHODS = ("biobert", "scibert", "exbert")
EXTENSION_KEYS = ("ext_hidden_size", "ext_intermediate_size", "ext_num_attention_heads")
STUDENT_KEYS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")


def tokenizer_size(tokenizer_dir: str | Path) -> int:
    with open(Path(tokenizer_dir) / "vocab.txt", encoding="utf-8") as f:
        return sum(1 for _ in f)


def build_adapt_teacher(method: str, base: str, tokenizer_dir: str | Path, extension: dict) -> ExBertForPreTraining:
    """The model an adaptation run starts from (see module docstring)."""
    base = resolve_model(base)
    vocab = tokenizer_size(tokenizer_dir)
    if method == "biobert":
        return ExBertForPreTraining.from_bert(base)
    if method == "scibert":
        return ExBertForPreTraining(ExBertConfig.from_bert_config(BertConfig.from_pretrained(base), vocab_size=vocab))
    if method == "exbert":
        base_vocab = BertConfig.from_pretrained(base).vocab_size
        if vocab <= base_vocab:
            raise ValueError(f"{tokenizer_dir}/vocab.txt has {vocab} entries: an extended vocab must exceed the "
                             f"base model's {base_vocab}")
        model = ExBertForPreTraining.from_bert(base, ext_vocab_size=vocab - base_vocab, **extension)
        model.freeze_original()
        return model
    raise ValueError(f"unknown adaptation method {method!r}; expected one of {ADAPT_METHODS}")


def build_student(student_sizes: dict, teacher: ExBertConfig, cls=ExBertForPreTraining):
    """A randomly initialised student of `student_sizes` (config models.student) sharing the teacher's
    vocabulary, extended when the teacher is."""
    sizes = {key: student_sizes[key] for key in STUDENT_KEYS}
    extension = {key: student_sizes[key] for key in EXTENSION_KEYS} if teacher.has_ext_layers else {}
    config = ExBertConfig(
        vocab_size=teacher.vocab_size,
        ext_vocab_size=teacher.ext_vocab_size,
        max_position_embeddings=teacher.max_position_embeddings,
        type_vocab_size=teacher.type_vocab_size,
        pad_token_id=teacher.pad_token_id,
        hidden_act=teacher.hidden_act,
        **sizes,
        **extension,
    )
    if config.total_attention_heads != teacher.total_attention_heads:
        raise ValueError(
            f"student heads ({config.total_attention_heads}) != teacher heads ({teacher.total_attention_heads}): "
            "TinyBERT's attention loss pairs heads one to one (models.student.num_attention_heads / "
            "ext_num_attention_heads)"
        )
    # a bare encoder for GD has no NSP head, so no pooler: DDP needs every parameter to get a gradient
    return cls(config, add_pooling_layer=False) if cls is ExBertModel else cls(config)


def load_teacher_encoder(teacher: str) -> ExBertModel:
    """An adapted teacher folder (ours) or any plain BERT checkpoint, as an encoder."""
    teacher = resolve_model(teacher)
    if Path(teacher, "config.json").is_file() and AutoConfig.from_pretrained(teacher).model_type == "exbert":
        return ExBertModel.from_pretrained(teacher)
    return ExBertModel.from_bert(teacher)


class DistillationStudent(nn.Module):
    """The student and TinyBERT's projection as one module, so one DDP wrapper and one optimizer cover both.
    A student with pretraining heads (EDAD) also computes its MLM + NSP loss; a bare encoder (GD) does not."""

    def __init__(self, student: ExBertModel | ExBertForPreTraining, teacher_config: ExBertConfig):
        super().__init__()
        self.student = student
        self.tiny = TinyBertLoss(student.config.hidden_size, teacher_config.hidden_size,
                                 student.config.num_hidden_layers, teacher_config.num_hidden_layers)
        self.all_layers = range(1, student.config.num_hidden_layers + 1)

    def forward(self, batch: dict, teacher_out, alpha_value: float = 1.0) -> dict[str, torch.Tensor]:
        inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch["token_type_ids"], output_hidden_states=True,
                      output_attention_scores=self.all_layers)
        if isinstance(self.student, ExBertForPreTraining):
            out = self.student(**inputs, labels=batch["labels"])
            parts = mlm_nsp_loss(out.mlm_logits, out.mlm_labels, out.nsp_logits, batch["next_sentence_label"])
        else:
            out = self.student(**inputs)
            parts = {}
        parts.update(self.tiny(out.hidden_states, out.attention_scores,
                               teacher_out.hidden_states, teacher_out.attention_scores))
        if parts.keys() >= {"mlm", "nsp"}:
            # every part is always computed so the graph (and DDP's gradient buckets) is the same at every step
            parts["loss"] = edad_student_loss(alpha_value, parts["mlm"], parts["nsp"], parts["tiny"])
        else:
            parts["loss"] = parts["tiny"]
        return parts


def _scalars(prefix: str, parts: dict[str, torch.Tensor]) -> dict[str, float]:
    return {f"{prefix}_{k}": v.detach() for k, v in parts.items() if k != "loss"}


@dataclass
class AdaptStep:
    masker: MlmMasker

    def __call__(self, models, batch, ctx):
        input_ids, labels = self.masker(batch["input_ids"], ctx.generator)
        out = models["teacher"](input_ids=input_ids, attention_mask=batch["attention_mask"],
                                  token_type_ids=batch["token_type_ids"], labels=labels)
        parts = mlm_nsp_loss(out.mlm_logits, out.mlm_labels, out.nsp_logits, batch["next_sentence_label"])
        return {"teacher": parts["mlm"] + parts["nsp"]}, _scalars("teacher", parts)


@dataclass
class DistillStep:
    """TinyBERT GD: unmasked text; the teacher is frozen (no gradient; the engine sets its mode from
    train.frozen_mode)."""

    teacher_layers: list[int]

    def __call__(self, models, batch, ctx):
        with torch.no_grad():
            teacher_out = models["teacher"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                            token_type_ids=batch["token_type_ids"],
                                            output_hidden_states=True, output_attention_scores=self.teacher_layers)
        parts = models["student"](batch, teacher_out)
        return {"student": parts["loss"]}, _scalars("student", parts)


@dataclass
class EdadStep:
    masker: MlmMasker
    schedule: str
    teacher_layers: list[int]

    def __call__(self, models, batch, ctx):
        input_ids, labels = self.masker(batch["input_ids"], ctx.generator)
        batch = dict(batch, input_ids=input_ids, labels=labels)
        teacher_out = models["teacher"](input_ids=input_ids, attention_mask=batch["attention_mask"],
                                        token_type_ids=batch["token_type_ids"], labels=labels,
                                        output_hidden_states=True, output_attention_scores=self.teacher_layers)
        teacher_parts = mlm_nsp_loss(teacher_out.mlm_logits, teacher_out.mlm_labels, teacher_out.nsp_logits,
                                     batch["next_sentence_label"])
        alpha_value = alpha(self.schedule, ctx.step, ctx.total_steps)
        student_parts = models["student"](batch, teacher_out, alpha_value)
        metrics = {**_scalars("teacher", teacher_parts), **_scalars("student", student_parts), "alpha": alpha_value}
        return {"teacher": teacher_parts["mlm"] + teacher_parts["nsp"], "student": student_parts["loss"]}, metrics


def _dataset(data_dir: str | Path, expected_vocab: int) -> PretrainingDataset:
    dataset = PretrainingDataset(data_dir)
    if dataset.meta["vocab_size"] != expected_vocab:
        raise ValueError(f"{data_dir}/meta.json: examples were tokenised with a {dataset.meta['vocab_size']}-entry "
                         f"vocab, the model has {expected_vocab} ids")
    return dataset


def _train(run: dict, train: TrainConfig, models: dict[str, nn.Module], trainable: list[str], data_dir, step_fn,
           tokenizer_dir, saves: dict[str, Callable[[Engine], nn.Module]], source: str) -> dict:
    """Run the engine (resuming its own checkpoints), then save each final model with save_pretrained next to
    its tokenizer (rank 0). The fingerprint: the run description (its `train` part the engine adds itself), the
    data's meta.json (settings, sizes, the corpus's sha256), the tokenizer files' and the `source` model's sha256."""
    dataset = _dataset(data_dir, models["teacher"].config.total_vocab_size)  # every model shares its vocab
    # the reference pads every batch to max_seq_length, which sets the scale of TinyBERT's terms (decision 8)
    pad_to = dataset.meta["settings"]["max_seq_length"] if train.pad_to_max_length else None
    collate = functools.partial(pad_collate, pad_to=pad_to)
    fingerprint = {"run": {k: v for k, v in run.items() if k != "train"}, "data": dataset.meta,
                   "tokenizer_sha256": tokenizer_sha256(tokenizer_dir), "source_sha256": weights_sha256(source)}
    if run.get("repeat"):  # a timing repeat: only its train_seconds count
        saves = {}
    with Engine(train, models, trainable, dataset, collate, step_fn, lengths=dataset.lengths,
                fingerprint=fingerprint) as engine:
        summary = engine.train(save_models=lambda: _save_models(engine, saves, train.output_dir, tokenizer_dir))
    return summary


def _save_models(engine: Engine, saves: dict, output_dir, tokenizer_dir) -> None:
    """Each final model as a save_pretrained folder with the tokenizer files beside it (rank 0 only), written whole
    or not at all (a crash mid-save leaves no half-written folder for a later job to read)."""
    for name, pick in saves.items():
        with atomic_dir(Path(output_dir) / name) as folder:
            pick(engine).save_pretrained(folder)
            for item in Path(tokenizer_dir).iterdir():
                if item.is_file():
                    shutil.copy2(item, folder / item.name)


def _extension(teacher: dict) -> dict:
    return {key: teacher[key] for key in EXTENSION_KEYS}


def run_adapt(run: dict, train: TrainConfig, data_dir, tokenizer_dir) -> dict:
    torch.manual_seed(train.seed)  # fresh weights (extension, student, projection) follow train.seed
    teacher = build_adapt_teacher(run["method"], run["teacher"]["base"], tokenizer_dir, _extension(run["teacher"]))
    masker = MlmMasker.from_tokenizer_dir(tokenizer_dir, run["mlm_probability"])
    return _train(run, train, {"teacher": teacher}, ["teacher"], data_dir, AdaptStep(masker), tokenizer_dir,
                  {"teacher": lambda e: e.unwrap("teacher")}, resolve_model(run["teacher"]["base"]))


def run_distill(run: dict, train: TrainConfig, data_dir, tokenizer_dir) -> dict:
    torch.manual_seed(train.seed)  # fresh weights (extension, student, projection) follow train.seed
    teacher = load_teacher_encoder(run["teacher_model"])
    student_sizes = run["student"]
    objective = DistillationStudent(build_student(student_sizes, teacher.config, ExBertModel), teacher.config)
    layers = distilled_teacher_layers(student_sizes["num_hidden_layers"], teacher.config.num_hidden_layers)
    return _train(run, train, {"teacher": teacher, "student": objective}, ["student"], data_dir, DistillStep(layers),
                  tokenizer_dir, {"student": lambda e: e.unwrap("student").student},
                  resolve_model(run["teacher_model"]))


def run_edad(run: dict, train: TrainConfig, data_dir, tokenizer_dir) -> dict:
    schedule, student_sizes = run["schedule"], run["student"]
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown alpha schedule {schedule!r}; expected one of {SCHEDULES}")
    torch.manual_seed(train.seed)  # fresh weights (extension, student, projection) follow train.seed
    teacher = build_adapt_teacher("exbert", run["teacher"]["base"], tokenizer_dir, _extension(run["teacher"]))
    objective = DistillationStudent(build_student(student_sizes, teacher.config), teacher.config)
    masker = MlmMasker.from_tokenizer_dir(tokenizer_dir, run["mlm_probability"])
    layers = distilled_teacher_layers(student_sizes["num_hidden_layers"], teacher.config.num_hidden_layers)
    return _train(run, train, {"teacher": teacher, "student": objective}, ["teacher", "student"], data_dir,
                  EdadStep(masker, schedule, layers), tokenizer_dir,
                  {"teacher": lambda e: e.unwrap("teacher"), "student": lambda e: e.unwrap("student").student},
                  resolve_model(run["teacher"]["base"]))


RUNNERS = {"adapt": run_adapt, "distill": run_distill, "edad": run_edad}


def run_training(run: dict, *, data_dir, tokenizer_dir, output_dir, work_dir) -> dict:
    """One training run from its description, the dict the workflow builds once per run (rules/common.smk
    `run_description`) and passes as the rule's `run` param:

        {"stage": "adapt", "method": "exbert", "teacher": {base, ext_*}, "mlm_probability": 0.15, "train": {...}}
        {"stage": "distill", "teacher_model": FOLDER_OR_HUB_ID, "student": {sizes}, "train": {...}}
        {"stage": "edad", "schedule": "linear", "teacher": {...}, "student": {...}, "mlm_probability": .., "train": {...}}

    `train` holds TrainConfig's fields (without the two folders). The same dict fingerprints the work folder
    (with the data, tokenizer and source model hashes: `_train`).
    `"repeat": k >= 1` marks a timing repeat: the same computation, no models saved."""
    if run.get("stage") not in RUNNERS:
        raise ValueError(f"run description: unknown stage {run.get('stage')!r}; expected one of {list(RUNNERS)}")
    train = TrainConfig(output_dir=str(output_dir), work_dir=str(work_dir), **run["train"])
    return RUNNERS[run["stage"]](run, train, data_dir, tokenizer_dir)
