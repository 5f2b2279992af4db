"""Task-specific distillation (edad_core.task_distill): the prediction-layer loss against a hand computation, the
intermediate phase computing general distillation's step unchanged, the two phases lowering their losses, a
`kill -9` mid-run resumed to the same weights as an uninterrupted run, and errors naming the mismatch."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer
from test_ner import LABELS, fixture_dataset  # noqa: I001  (tests/ is on sys.path under pytest)

from edad_core import stages, task_distill
from edad_core.losses import distilled_teacher_layers
from edad_core.modeling import ExBertConfig, ExBertForTokenClassification, ExBertModel
from edad_core.ner import TokenDataset, collate, encode, load_model
from edad_core.task_distill import IntermediateStep, prediction_loss, run_task_distill

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json")
SETTINGS = {"epochs": {"intermediate": 1, "prediction": 2}, "lr": {"intermediate": 1e-3, "prediction": 1e-3},
            "temperature": 2.0, "batch_size": 8, "per_device_batch_size": 8, "warmup_ratio": 0.1,
            "weight_decay": 0.01, "optimizer": "bert_adam", "adam_eps": 1e-6, "max_grad_norm": 1.0,
            "clip_mode": "per_tensor", "precision": "fp32", "checkpoint_every": 2, "log_every": 1,
            "group_by_length": True, "max_length": 16, "unlabelled_sentences": 0}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: here and in the subprocesses


def save_with_tokenizer(model, folder: Path, minilm: Path) -> Path:
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm / name, folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm):
    """A 4-layer tagger as the fine-tuned teacher, a 2-layer encoder as the GD student (MiniLM's vocab), the
    fixture NER dataset."""
    root = tmp_path_factory.mktemp("td")
    torch.manual_seed(0)
    head = dict(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})
    teacher = ExBertForTokenClassification(ExBertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4,
                                                        num_attention_heads=4, intermediate_size=64, **head))
    student = ExBertModel(ExBertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=32), add_pooling_layer=False)
    return SimpleNamespace(teacher=save_with_tokenizer(teacher, root / "teacher", minilm),
                           student=save_with_tokenizer(student, root / "student", minilm),
                           data=fixture_dataset(root / "data", 96, 0))


def description(seed: int = 1, **settings) -> dict:
    return {"stage": "task_distill", "row": "tiny_TD", "dataset": "fixture", "seed": seed,
            "settings": {**SETTINGS, **settings}}


def distill(tiny, folder: Path, **settings) -> dict:
    return run_task_distill(description(**settings), data_dir=tiny.data, teacher_dir=tiny.teacher,
                            student_dir=tiny.student, output_dir=folder / "out", work_dir=folder / "work")


def test_prediction_loss_is_zero_for_equal_logits_and_matches_a_hand_computation():
    logits = torch.tensor([[[1.0, -2.0, 0.5], [3.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, -100]])
    assert prediction_loss(logits, logits.clone(), labels, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.tensor([[[0.0, 0.0, 0.0], [5.0, 1.0, 1.0]], [[2.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])
    teacher = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]])
    labels = torch.tensor([[1, 4], [0, -100]])  # the last piece is not labelled: left out
    # T = 2: teacher logits (1, 0, 0) against uniform student, and uniform teacher against (1, 0, 0) student
    e = math.e
    p = [e / (e + 2), 1 / (e + 2), 1 / (e + 2)]  # softmax(1, 0, 0)
    kl_first = sum(pi * math.log(pi / (1 / 3)) for pi in p)
    kl_third = sum((1 / 3) * math.log((1 / 3) / pi) for pi in p)
    logits_second = [2.5, 0.5, 0.5]  # (5, 1, 1) / 2 against the uniform teacher
    z = sum(math.exp(v) for v in logits_second)
    kl_second = sum((1 / 3) * math.log((1 / 3) / (math.exp(v) / z)) for v in logits_second)
    expected = (kl_first + kl_second + kl_third) / 3
    assert prediction_loss(student, teacher, labels, 2.0).item() == pytest.approx(expected, rel=1e-6)
    # soft cross-entropy minus the teacher's entropy: the same student gradient as TinyBERT's soft CE
    s = student.clone().requires_grad_()
    keep = labels != -100
    soft_ce = -(torch.softmax(teacher[keep] / 2, -1) * torch.log_softmax(s[keep] / 2, -1)).sum(-1).mean()
    ours = prediction_loss(s, teacher, labels, 2.0)
    assert torch.allclose(torch.autograd.grad(ours, s)[0], torch.autograd.grad(soft_ce, s)[0], atol=1e-7)
    none = torch.full((1, 2), -100)
    assert prediction_loss(student[:1], teacher[:1], none, 1.0).item() == 0.0


def test_the_intermediate_phase_is_general_distillations_step_unchanged(tiny):
    """Same class (DistillationStudent, with TinyBertLoss inside) and the same numbers as GD's DistillStep on the
    same models and batch (GD's batches carry segment ids, NER windows are single segments: zeros)."""
    assert task_distill.DistillationStudent is stages.DistillationStudent
    torch.manual_seed(0)
    teacher = ExBertForTokenClassification.from_pretrained(tiny.teacher).eval()
    student, tokenizer = load_model(str(tiny.student), LABELS)
    objective = stages.DistillationStudent(student.bert, teacher.config).eval()
    sentences = [["aspirin", "helps", "with", "fever"], ["the", "anemia"]]
    data = TokenDataset(encode(tokenizer, sentences, 16), [[1, 0, 0, 3], [0, 3]])
    batch = collate([data[0], data[1]], tokenizer.pad_token_id)
    layers = distilled_teacher_layers(2, 4)
    models = {"teacher": teacher.bert, "student": objective}
    ours, our_metrics = IntermediateStep(layers)(models, batch, None)
    gd_batch = dict(batch, token_type_ids=torch.zeros_like(batch["input_ids"]))
    theirs, their_metrics = stages.DistillStep(layers)(models, gd_batch, None)
    assert ours["student"].item() == theirs["student"].item() > 0
    assert our_metrics.keys() == their_metrics.keys() == {"student_emb", "student_hidden", "student_attn",
                                                          "student_tiny"}


def test_both_phases_lower_their_losses_and_leave_a_loadable_tagger(tiny, tmp_path):
    summary = distill(tiny, tmp_path)
    assert summary["train_seconds"] == pytest.approx(sum(p["train_seconds"] for p in summary["phases"].values()))
    for phase in ("intermediate", "prediction"):
        log = [json.loads(l) for l in (tmp_path / "out" / f"metrics-{phase}.jsonl").read_text().splitlines()]
        assert log[-1]["loss"] < log[0]["loss"], phase
    tagger = ExBertForTokenClassification.from_pretrained(tmp_path / "out" / "student")
    assert tagger.config.id2label == dict(enumerate(LABELS)) and tagger.config.num_hidden_layers == 2
    assert (tmp_path / "out" / "student" / "vocab.txt").is_file()
    assert not list((tmp_path / "work").rglob("checkpoint-*"))  # a finished run keeps no checkpoint


RUNNER = textwrap.dedent("""
    import json, sys, time
    import torch
    from edad_core import task_distill
    torch.set_num_threads(1)
    step = task_distill.PredictionStep.__call__
    def slow(self, *args):  # time for the test to see a checkpoint and kill the run mid-phase
        time.sleep(0.15)
        return step(self, *args)
    task_distill.PredictionStep.__call__ = slow
    run, data, teacher, student, out, work = sys.argv[1:]
    task_distill.run_task_distill(json.loads(run), data_dir=data, teacher_dir=teacher, student_dir=student,
                                  output_dir=out, work_dir=work)
""")


def test_kill_9_mid_run_and_a_rerun_give_the_same_weights(tiny, tmp_path):
    reference = tmp_path / "reference"
    distill(tiny, reference)
    folder = tmp_path / "killed"
    args = [sys.executable, "-c", RUNNER, json.dumps(description()), str(tiny.data), str(tiny.teacher),
            str(tiny.student), str(folder / "out"), str(folder / "work")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = folder / "work" / "prediction" / "work" / "checkpoint-4"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    assert (folder / "work" / "intermediate" / "train_summary.json").exists()  # phase 1 done, phase 2 cut
    assert not (folder / "out" / "train_summary.json").exists()
    done = subprocess.run(args, env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    ours = load_file(folder / "out" / "student" / "model.safetensors")
    theirs = load_file(reference / "out" / "student" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    log = lambda f: [{k: v for k, v in json.loads(l).items() if k != "tokens_per_s"}
                     for l in (f / "out" / "metrics-prediction.jsonl").read_text().splitlines()]
    assert log(folder) == log(reference)


def test_a_mismatched_teacher_is_named(tiny, tmp_path):
    other = tmp_path / "other-labels"
    shutil.copytree(tiny.teacher, other)
    config = json.loads((other / "config.json").read_text())
    config["id2label"] = {str(i): l for i, l in enumerate(["O", "B-Gene", "I-Gene", "B-Dis", "I-Dis"])}
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="fine-tuned on another dataset"):
        run_task_distill(description(), data_dir=tiny.data, teacher_dir=other, student_dir=tiny.student,
                         output_dir=tmp_path / "out", work_dir=tmp_path / "work")
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["hepatotoxicity"])
    tokenizer.save_pretrained(other)
    with pytest.raises(ValueError, match="share one vocabulary"):
        run_task_distill(description(), data_dir=tiny.data, teacher_dir=other, student_dir=tiny.student,
                         output_dir=tmp_path / "out", work_dir=tmp_path / "work")
