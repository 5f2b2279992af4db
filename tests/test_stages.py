"""The training stages on a tiny but real pipeline (CRAFT text of the mirror -> corpus -> vocabs -> pretraining
examples -> a random 4-layer BERT as base): what adaptation trains and saves, EDAD's student gradient against
TinyBERT GD's, EDAD lowering both losses, stage-level resume after a crash, a start-over when a source file
changes, and the configuration errors."""

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForPreTraining, AutoTokenizer, BertConfig, BertForPreTraining

from edad_core import stages
from edad_core.corpus import build_corpus
from edad_core.engine import TrainConfig, epoch_batches
from edad_core.losses import distilled_teacher_layers
from edad_core.modeling import ExBertForPreTraining, ExBertModel
from edad_core.pretrain_data import MlmMasker, PretrainingDataset, create_examples, pad_collate
from edad_core.schedules import SCHEDULES
from edad_core.stages import (
    ADAPT_METHODS,
    AdaptStep,
    DistillationStudent,
    DistillStep,
    EdadStep,
    build_adapt_teacher,
    build_student,
    load_teacher_encoder,
    run_adapt,
    run_distill,
    run_edad,
)
from edad_core.vocab import build_base_vocab, build_domain_only_vocab, build_extended_vocab

CRAFT_ARTICLES = ("16504174", "16507151", "16611361")  # three short articles, ~9.1k words (in tests/data too)
MAX_SEQ_LENGTH = 32
BASE_VOCAB, EXT_SIZE, DOMAIN_SIZE = 30522, 100, 500
TEACHER_LAYERS = 4
TEACHER_EXT = {"ext_hidden_size": 24, "ext_intermediate_size": 32, "ext_num_attention_heads": 12}
STUDENT = {"num_hidden_layers": 2, "hidden_size": 24, "intermediate_size": 48, "num_attention_heads": 12,
           "ext_hidden_size": 12, "ext_intermediate_size": 16, "ext_num_attention_heads": 12}
MLM_PROBABILITY = 0.15
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def pipe(tmp_path_factory, mirror, minilm):
    root = tmp_path_factory.mktemp("pipeline")
    articles = next(mirror.glob("raw.githubusercontent.com/UCDenver-ccp/CRAFT/*/articles/txt"))
    corpus = root / "corpus.txt"
    build_corpus([{"kind": "local", "paths": [str(articles / f"{a}.txt") for a in CRAFT_ARTICLES]}], corpus,
                 root / "corpus.json", root / "manifest.tsv", n_tokens=7000, cache_dir=root / "cache")

    torch.manual_seed(0)
    base = root / "base"
    BertForPreTraining(BertConfig(
        vocab_size=BASE_VOCAB, hidden_size=48, num_hidden_layers=TEACHER_LAYERS, num_attention_heads=12,
        intermediate_size=96, max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )).save_pretrained(base)
    shutil.copy(minilm / "vocab.txt", base)

    tokenizers = {
        "base": build_base_vocab(str(base), root / "tok-base"),
        "ext": build_extended_vocab([corpus], str(base), root / "tok-ext", ext_size=EXT_SIZE,
                                    total_size=BASE_VOCAB + EXT_SIZE),
        "domain": build_domain_only_vocab([corpus], root / "tok-domain", size=DOMAIN_SIZE),
    }
    data = {name: root / f"data-{name}" for name in tokenizers}
    for name, tok in tokenizers.items():
        create_examples(corpus, tok, data[name], max_seq_length=MAX_SEQ_LENGTH)
    # a handful of examples (the first 10 sentences of two documents) that a few epochs can overfit
    small_corpus = root / "corpus-small.txt"
    documents = corpus.read_text().split("\n\n")[:2]
    small_corpus.write_text("\n\n".join("\n".join(doc.splitlines()[:10]) for doc in documents))
    data["small"] = root / "data-small"
    assert create_examples(small_corpus, tokenizers["ext"], data["small"], max_seq_length=MAX_SEQ_LENGTH)[
        "n_examples"] < 20
    # two-sentence documents of short sentences: examples end before max_seq_length, so padding matters
    short = [line for line in corpus.read_text().splitlines() if line and len(line.split()) <= 6]
    short_corpus = root / "corpus-short.txt"
    short_corpus.write_text("\n\n".join("\n".join(short[i : i + 2]) for i in range(0, len(short) - 1, 2)))
    data["short"] = root / "data-short"
    create_examples(short_corpus, tokenizers["base"], data["short"], max_seq_length=MAX_SEQ_LENGTH)
    return SimpleNamespace(base=str(base), tok=tokenizers, data=data)


def train_config(folder: Path, **overrides) -> TrainConfig:
    settings = dict(output_dir=str(folder / "out"), work_dir=str(folder / "work"), lr=1e-3, max_steps=3,
                    batch_size=4, per_device_batch_size=2, precision="fp32", checkpoint_every=2, log_every=1)
    return TrainConfig(**{**settings, **overrides})


def settings(cfg: TrainConfig) -> dict:
    """The run description's `train` part, as rules/common.smk builds it: TrainConfig's fields but the folders."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("output_dir", "work_dir")}


def adapt(pipe, method: str, vocab: str, cfg: TrainConfig) -> dict:
    run = {"stage": "adapt", "method": method, "teacher": {"base": pipe.base, **TEACHER_EXT},
           "mlm_probability": MLM_PROBABILITY, "train": settings(cfg)}
    return run_adapt(run, cfg, pipe.data[vocab], pipe.tok[vocab])


def edad(pipe, cfg: TrainConfig, schedule: str = "linear", data: str = "ext") -> dict:
    run = {"stage": "edad", "schedule": schedule, "teacher": {"base": pipe.base, **TEACHER_EXT}, "student": STUDENT,
           "mlm_probability": MLM_PROBABILITY, "train": settings(cfg)}
    return run_edad(run, cfg, pipe.data[data], pipe.tok["ext"])


def distill(pipe, teacher: str, cfg: TrainConfig, data: str = "base") -> dict:
    run = {"stage": "distill", "teacher_model": teacher, "student": STUDENT, "train": settings(cfg)}
    return run_distill(run, cfg, pipe.data[data], pipe.tok["base"])


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timing(log: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "tokens_per_s"} for record in log]


def load_saved(folder: Path):
    assert all((folder / name).is_file() for name in TOKENIZER_FILES), sorted(p.name for p in folder.iterdir())
    return AutoModelForPreTraining.from_pretrained(folder)


# --------------------------------------------------------------------------------------------- adaptation
def test_exbert_adaptation_trains_only_the_extension_and_saves_a_loadable_teacher(pipe, tmp_path, monkeypatch):
    initial = {}

    def recording_build(*args):
        model = build_adapt_teacher(*args)
        initial.update(weights(model))
        return model

    monkeypatch.setattr(stages, "build_adapt_teacher", recording_build)
    summary = adapt(pipe, "exbert", "ext", train_config(tmp_path))
    out = tmp_path / "out"
    teacher = load_saved(out / "teacher")
    assert isinstance(teacher, ExBertForPreTraining)
    assert teacher.config.total_vocab_size == BASE_VOCAB + EXT_SIZE
    assert len(AutoTokenizer.from_pretrained(out / "teacher")) == BASE_VOCAB + EXT_SIZE

    saved = weights(teacher)
    base = BertForPreTraining.from_pretrained(pipe.base).state_dict()
    originals = [k for k in base if k.startswith("bert.")]
    assert len(originals) == 5 + 16 * TEACHER_LAYERS + 2  # embeddings, layers, pooler: none missed
    for key in originals:
        assert torch.equal(saved[key], base[key]), f"frozen original weight {key} changed"
    trained = [k for k in saved if teacher.is_extension_parameter(k)]
    assert {k for k in saved if k not in trained} == set(originals)
    assert any(".ext." in k for k in trained) and any(".gate." in k for k in trained)
    for key in trained:
        assert not torch.equal(saved[key], initial[key]), f"extension weight {key} did not train"

    assert summary["steps"] == 3
    assert summary["params"]["teacher"]["trainable"] == sum(saved[k].numel() for k in trained)
    assert json.loads((out / "train_summary.json").read_text()) == summary
    log = read_log(out / "metrics.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3]
    assert set(log[0]) == {"step", "epoch", "loss", "loss/teacher", "teacher_mlm", "teacher_nsp", "lr/teacher",
                           "tokens_per_s"}
    assert all(r["loss/teacher"] == pytest.approx(r["teacher_mlm"] + r["teacher_nsp"]) for r in log)


def test_biobert_adaptation_trains_every_weight(pipe, tmp_path):
    adapt(pipe, "biobert", "base", train_config(tmp_path))
    saved = weights(load_saved(tmp_path / "out" / "teacher"))
    base = BertForPreTraining.from_pretrained(pipe.base).state_dict()
    shared = [k for k in base if not k.startswith("cls.predictions.decoder.")]  # the decoder is the embedding table
    assert set(shared) == set(saved)
    unchanged = [k for k in shared if torch.equal(saved[k], base[k])]
    assert not unchanged, f"weights that did not train: {unchanged}"


def test_scibert_adaptation_starts_from_the_base_shape_with_the_domain_vocab(pipe, tmp_path):
    adapt(pipe, "scibert", "domain", train_config(tmp_path, max_steps=1))
    config = load_saved(tmp_path / "out" / "teacher").config
    base = BertConfig.from_pretrained(pipe.base)
    assert (config.vocab_size, config.ext_vocab_size, config.ext_num_attention_heads) == (DOMAIN_SIZE, 0, 0)
    shape = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings")
    assert all(getattr(config, key) == getattr(base, key) for key in shape)


# --------------------------------------------------------------------------------------------- EDAD == GD
@pytest.fixture(scope="module")
def objectives(pipe):
    """An exBERT teacher, an EDAD student objective, and a GD objective holding the same student weights; all in
    eval mode (no dropout) so that the two students compute the same forward."""
    torch.manual_seed(0)
    teacher = build_adapt_teacher("exbert", pipe.base, pipe.tok["ext"], TEACHER_EXT).eval()
    student = DistillationStudent(build_student(STUDENT, teacher.config), teacher.config)
    gd = DistillationStudent(ExBertModel(student.student.config), teacher.config)
    gd.student.load_state_dict(student.student.bert.state_dict())
    gd.tiny.load_state_dict(student.tiny.state_dict())
    student.eval()
    gd.eval()
    dataset = PretrainingDataset(pipe.data["ext"])
    batch = pad_collate([dataset[i] for i in range(4)])
    masker = MlmMasker.from_tokenizer_dir(pipe.tok["ext"], MLM_PROBABILITY)
    return SimpleNamespace(teacher=teacher, student=student, gd=gd, batch=batch, masker=masker,
                           layers=distilled_teacher_layers(STUDENT["num_hidden_layers"], TEACHER_LAYERS),
                           data_dir=pipe.data["ext"])


def ctx(step: int, seed: int = 7) -> SimpleNamespace:
    return SimpleNamespace(step=step, total_steps=10, generator=torch.Generator().manual_seed(seed))


def gradients(loss: torch.Tensor, named_params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """d loss / d param for every param; zeros where the loss does not reach it."""
    grads = torch.autograd.grad(loss, list(named_params.values()), allow_unused=True)
    return {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(named_params.items(), grads)}


def trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {k: p for k, p in model.named_parameters() if p.requires_grad}


def student_params(objective: DistillationStudent) -> dict[str, torch.nn.Parameter]:
    """The encoder's parameters under ExBertModel names, and the projection's."""
    encoder = objective.student.bert if hasattr(objective.student, "bert") else objective.student
    return {**dict(encoder.named_parameters()), **{f"tiny.{k}": p for k, p in objective.tiny.named_parameters()}}


def edad_gradients(o, schedule: str, step: int):
    """Gradients of the summed EDAD losses (as the engine backpropagates them): {student, heads, teacher}."""
    losses, metrics = EdadStep(o.masker, schedule, o.layers)({"teacher": o.teacher, "student": o.student}, o.batch,
                                                              ctx(step))
    parts = {"student": student_params(o.student), "heads": dict(o.student.student.cls.named_parameters()),
             "teacher": trainable(o.teacher)}
    grads = gradients(sum(losses.values()), {(part, k): p for part, ps in parts.items() for k, p in ps.items()})
    return {part: {k: grads[part, k] for k in ps} for part, ps in parts.items()}, metrics


def assert_same_gradients(actual: dict, expected: dict, rtol: float = 1e-6, atol: float = 1e-9):
    assert actual.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(actual[name], grad, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize(("schedule", "step"), [("only_dt", 5), ("linear", 0)])
def test_edad_at_alpha_1_gives_the_student_the_gd_gradient(objectives, schedule, step):
    o = objectives
    grads, metrics = edad_gradients(o, schedule, step)
    assert metrics["alpha"] == 1.0
    assert not any(g.any() for g in grads["heads"].values())  # MLM + NSP weigh 0

    masked_ids, _ = o.masker(o.batch["input_ids"], ctx(step).generator)  # the mask EdadStep drew
    assert not torch.equal(masked_ids, o.batch["input_ids"])
    gd_losses, _ = DistillStep(o.layers)({"teacher": o.teacher.bert, "student": o.gd},
                                         dict(o.batch, input_ids=masked_ids), ctx(step))
    assert_same_gradients(grads["student"], gradients(gd_losses["student"], student_params(o.gd)))

    # the teacher's gradient is plain adaptation's: the student's loss does not reach it (float round-off only:
    # adaptation runs every layer's attention through sdpa, EDAD materialises the distilled layers' scores)
    adapt_losses, _ = AdaptStep(o.masker)({"teacher": o.teacher}, o.batch, ctx(step))
    assert_same_gradients(grads["teacher"], gradients(adapt_losses["teacher"], trainable(o.teacher)), 1e-5, 1e-7)


def test_edad_at_alpha_0_gives_the_projection_no_gradient(objectives):
    grads, metrics = edad_gradients(objectives, "only_da", 3)
    assert metrics["alpha"] == 0.0
    projection = {k: g for k, g in grads["student"].items() if k.startswith("tiny.")}
    assert projection.keys() == {"tiny.proj.weight", "tiny.proj.bias"}
    assert not any(g.any() for g in projection.values())
    assert grads["student"]["embeddings.word_embeddings.weight"].any()  # MLM + NSP train the student
    assert grads["heads"]["seq_relationship.weight"].any()


# --------------------------------------------------------------------------------------------- the reference's GD
def reference_pad(examples: list[dict]) -> dict:
    """Every example padded to max_seq_length, as the reference's feature conversion does (ids + [0] * n)."""
    def pad(values):
        return torch.tensor([v.tolist() + [0] * (MAX_SEQ_LENGTH - len(v)) for v in values])

    return {"input_ids": pad([e["input_ids"] for e in examples]),
            "token_type_ids": pad([e["token_type_ids"] for e in examples]),
            "attention_mask": pad([torch.ones_like(e["input_ids"]) for e in examples])}


def reference_tinybert_loss(student_out, teacher_out, proj: torch.nn.Linear) -> torch.Tensor:
    """TinyBERT's general_distill.py: teacher layer k(m+1) for student layer m (0-based), MSE of the scores with
    entries <= -100 zeroed, MSE of the projected student reps against teacher reps 0, k, 2k, ... (embeddings
    first), summed."""
    mse = torch.nn.MSELoss()
    student_atts = [student_out.attention_scores[m] for m in sorted(student_out.attention_scores)]
    teacher_atts = [teacher_out.attention_scores[t] for t in sorted(teacher_out.attention_scores)]
    k = (len(teacher_out.hidden_states) - 1) // len(student_atts)
    att_loss = 0.0
    for student_att, teacher_att in zip(student_atts, teacher_atts):
        student_att = torch.where(student_att <= -1e2, torch.zeros_like(student_att), student_att)
        teacher_att = torch.where(teacher_att <= -1e2, torch.zeros_like(teacher_att), teacher_att)
        att_loss = att_loss + mse(student_att, teacher_att)
    rep_loss = 0.0
    for student_rep, teacher_rep in zip(student_out.hidden_states, teacher_out.hidden_states[::k]):
        rep_loss = rep_loss + mse(proj(student_rep), teacher_rep)
    return att_loss + rep_loss


@pytest.fixture(scope="module")
def dropout_teacher(pipe, tmp_path_factory) -> str:
    """The tiny base BERT with BERT's dropout (0.1), so that the GD teacher's mode changes its targets."""
    folder = tmp_path_factory.mktemp("dropout-teacher")
    BertForPreTraining.from_pretrained(pipe.base, hidden_dropout_prob=0.1,
                                       attention_probs_dropout_prob=0.1).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("frozen_mode", ["train", "eval"])
def test_a_gd_step_equals_the_reference_one(pipe, dropout_teacher, tmp_path, monkeypatch, frozen_mode):
    """One GD step under the paper's choices (BertAdam, per-tensor clipping, batches padded to max_seq_length)
    against a hand computation: the teacher in the configured mode under no_grad, TinyBERT's loss loop on the
    reference's padding, and BertAdam's first update written out."""
    seen, step_fn = {}, DistillStep.__call__

    def recording_step(self, models, batch, ctx):
        seen.update(training=models["teacher"].training, width=batch["input_ids"].shape[1],
                    rng=torch.get_rng_state())  # dropout draws from the global RNG
        return step_fn(self, models, batch, ctx)

    monkeypatch.setattr(DistillStep, "__call__", recording_step)
    cfg = train_config(tmp_path, max_steps=1, batch_size=4, per_device_batch_size=4, lr=1e-3, weight_decay=0.01,
                       optimizer="bert_adam", adam_eps=1e-6, clip_mode="per_tensor", max_grad_norm=1.0,
                       frozen_mode=frozen_mode, pad_to_max_length=True)
    distill(pipe, dropout_teacher, cfg, data="short")
    assert seen["training"] is (frozen_mode == "train")
    assert seen["width"] == MAX_SEQ_LENGTH
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["choices"]["frozen_mode"] == frozen_mode and summary["choices"]["optimizer"] == "bert_adam"
    fingerprint = (tmp_path / "work" / "run.json").read_text()  # the checkpoints' claim names every choice
    assert all(f'"{key}": {json.dumps(value)}' in fingerprint for key, value in summary["choices"].items())

    torch.manual_seed(cfg.seed)  # the fresh weights run_distill made
    teacher = load_teacher_encoder(dropout_teacher).train(frozen_mode == "train")
    init = DistillationStudent(build_student(STUDENT, teacher.config, ExBertModel), teacher.config)
    student, proj = init.student.train(), init.tiny.proj
    dataset = PretrainingDataset(pipe.data["short"])
    examples = [dataset[int(i)] for i in epoch_batches(len(dataset), 4, cfg.seed, 0)[0]]
    assert max(len(e["input_ids"]) for e in examples) < MAX_SEQ_LENGTH  # dynamic padding would be narrower
    batch = reference_pad(examples)
    torch.set_rng_state(seen["rng"])
    with torch.no_grad():
        teacher_out = teacher(**batch, output_hidden_states=True, output_attention_scores=[2, 4])
    student_out = student(**batch, output_hidden_states=True, output_attention_scores=[1, 2])
    loss = reference_tinybert_loss(student_out, teacher_out, proj)
    loss.backward()
    if frozen_mode == "train":  # dropout on: other targets than eval mode's
        eval_out = teacher.eval()(**batch, output_hidden_states=True)
        assert not torch.allclose(eval_out.hidden_states[-1], teacher_out.hidden_states[-1])

    log = read_log(tmp_path / "out" / "metrics.jsonl")
    assert log[0]["loss/student"] == pytest.approx(loss.item(), rel=1e-5)
    trained = dict(ExBertModel.from_pretrained(tmp_path / "out" / "student", add_pooling_layer=False)
                   .named_parameters())
    assert trained.keys() == dict(student.named_parameters()).keys()
    for name, p in student.named_parameters():
        g = p.grad * min(1.0, 1.0 / (p.grad.norm().item() + 1e-6))  # per tensor, at 1.0
        m, v = 0.1 * g, 0.001 * g * g  # BertAdam's first step: no bias correction
        decay = 0.0 if name.endswith("bias") or "LayerNorm" in name else 0.01
        expected = p.detach() - 1e-3 * (m / (v.sqrt() + 1e-6) + decay * p.detach())
        torch.testing.assert_close(trained[name], expected, rtol=1e-5, atol=1e-6, msg=name)


def test_padding_to_max_length_puts_tinybert_terms_on_the_reference_scale(objectives):
    """The data's one short example (most fill max_seq_length): its loss padded to max_seq_length equals the
    reference loop's; dynamic padding averages over fewer positions and gives another value."""
    o = objectives
    dataset = PretrainingDataset(o.data_dir)
    short = [min((dataset[i] for i in range(len(dataset))), key=lambda e: len(e["input_ids"]))]
    assert len(short[0]["input_ids"]) < MAX_SEQ_LENGTH - 8

    def parts(batch):  # as DistillStep computes them
        with torch.no_grad():
            return DistillStep(o.layers)({"teacher": o.teacher.bert, "student": o.gd}, batch, None)[1]

    padded = parts(pad_collate(short, pad_to=MAX_SEQ_LENGTH))
    batch = reference_pad(short)
    with torch.no_grad():
        expected = reference_tinybert_loss(
            o.gd.student(**batch, output_hidden_states=True, output_attention_scores=[1, 2]),
            o.teacher.bert(**batch, output_hidden_states=True, output_attention_scores=o.layers), o.gd.tiny.proj)
    torch.testing.assert_close(padded["student_tiny"], expected, rtol=1e-5, atol=1e-7)
    dynamic = parts(pad_collate(short))
    assert abs(dynamic["student_attn"] / padded["student_attn"] - 1) > 0.05, (dynamic, padded)


# --------------------------------------------------------------------------------------------- EDAD runs
def test_edad_lowers_the_teacher_mlm_and_the_student_distillation_loss(pipe, tmp_path):
    """Both losses at a constant weight (same_ratio), 30 steps = 4 epochs over a handful of examples."""
    edad(pipe, train_config(tmp_path, max_steps=30, checkpoint_every=30, lr=1e-2), "same_ratio", data="small")
    log = read_log(tmp_path / "out" / "metrics.jsonl")
    assert len(log) == 30
    first, last = ({key: sum(r[key] for r in part) / 3 for key in log[0]} for part in (log[:3], log[-3:]))
    curves = {key: [round(r[key], 2) for r in log] for key in ("teacher_mlm", "student_tiny")}
    # 10.29 -> 9.93 here: the teacher's decoder is its frozen random embedding table, so MLM learns slowly (an
    # untrained teacher stays at ln(30622) = 10.33 +- 0.05); the student's targets move with the teacher
    assert last["teacher_mlm"] < first["teacher_mlm"] - 0.2, curves
    assert last["student_tiny"] < 0.75 * first["student_tiny"], curves  # 2.71 -> 1.27 here


def edad_steps(pipe, cfg: TrainConfig, monkeypatch, crash_at: int | None = None) -> list[int]:
    """run_edad, returning the optimizer steps it computed; it raises at step `crash_at`."""
    computed, step_fn = [], EdadStep.__call__

    def recording_step(self, models, batch, ctx):
        if ctx.step == crash_at:
            raise RuntimeError("simulated crash")
        computed.append(ctx.step)
        return step_fn(self, models, batch, ctx)

    with monkeypatch.context() as patch:
        patch.setattr(EdadStep, "__call__", recording_step)
        edad(pipe, cfg)
    return sorted(set(computed))


def test_edad_resumes_bit_identically_after_a_crash(pipe, tmp_path, monkeypatch):
    """Each run starts from another global RNG state: the fresh weights must follow train.seed."""
    straight, crashing = (train_config(tmp_path / name, max_steps=6, checkpoint_every=3)
                          for name in ("straight", "crashed"))
    torch.manual_seed(1)
    assert edad_steps(pipe, straight, monkeypatch) == [0, 1, 2, 3, 4, 5]
    torch.manual_seed(2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        edad_steps(pipe, crashing, monkeypatch, crash_at=3)
    assert [p.name for p in Path(crashing.work_dir).glob("checkpoint-*")] == ["checkpoint-3"]
    torch.manual_seed(3)
    assert edad_steps(pipe, crashing, monkeypatch) == [3, 4, 5]

    for name in ("teacher", "student"):
        a = weights(load_saved(Path(straight.output_dir) / name))
        b = weights(load_saved(Path(crashing.output_dir) / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    logs = [without_timing(read_log(Path(cfg.output_dir) / "metrics.jsonl")) for cfg in (straight, crashing)]
    assert logs[0] == logs[1]
    assert [r["alpha"] for r in logs[1]] == [1 - s / 6 for s in range(6)]


def test_a_changed_source_model_or_tokenizer_starts_the_stage_over(pipe, tmp_path, monkeypatch, caplog):
    """A stage's fingerprint holds the sha256 of its source weights and tokenizer files: changed in place (the
    same paths, the same run description), the checkpoints are not resumed and the log names the changed file."""
    base, tok = tmp_path / "base", tmp_path / "tok"
    shutil.copytree(pipe.base, base)
    shutil.copytree(pipe.tok["base"], tok)
    computed, step_fn = [], AdaptStep.__call__
    monkeypatch.setattr(AdaptStep, "__call__",
                        lambda self, models, batch, ctx: computed.append(ctx.step) or step_fn(self, models, batch, ctx))
    cfg = train_config(tmp_path, max_steps=2)

    def steps_computed():
        computed.clear()
        run = {"stage": "adapt", "method": "biobert", "teacher": {"base": str(base), **TEACHER_EXT},
               "mlm_probability": MLM_PROBABILITY, "train": settings(cfg)}
        run_adapt(run, cfg, pipe.data["base"], tok)
        return sorted(set(computed))

    assert steps_computed() == [0, 1] and steps_computed() == []  # finished: a rerun resumes at its end
    torch.manual_seed(5)
    BertForPreTraining(BertConfig.from_pretrained(base)).save_pretrained(base)
    with caplog.at_level("WARNING"):
        assert steps_computed() == [0, 1]
    assert "source_sha256.model.safetensors: " in caplog.text and "tokenizer_sha256" not in caplog.text
    caplog.clear()
    tokenizer_config = json.loads((tok / "tokenizer_config.json").read_text())
    (tok / "tokenizer_config.json").write_text(json.dumps({**tokenizer_config, "model_max_length": 64}))
    with caplog.at_level("WARNING"):
        assert steps_computed() == [0, 1]
    assert "tokenizer_sha256.tokenizer_config.json: " in caplog.text and "source_sha256" not in caplog.text


# --------------------------------------------------------------------------------------------- errors
def test_configuration_errors_name_the_key_or_file(pipe, tmp_path):
    teacher = build_adapt_teacher("exbert", pipe.base, pipe.tok["ext"], TEACHER_EXT)
    with pytest.raises(ValueError, match=r"models\.student\.num_attention_heads"):
        build_student({**STUDENT, "num_attention_heads": 6}, teacher.config)
    with pytest.raises(ValueError, match=r"data-base/meta\.json.*30522-entry vocab.*30622 ids"):
        stages._dataset(pipe.data["base"], BASE_VOCAB + EXT_SIZE)
    with pytest.raises(ValueError, match="unknown alpha schedule 'linaer'.*" + ".*".join(SCHEDULES)):
        edad(pipe, train_config(tmp_path), schedule="linaer")
    with pytest.raises(ValueError, match="unknown adaptation method 'exbret'.*" + ".*".join(ADAPT_METHODS)):
        adapt(pipe, "exbret", "ext", train_config(tmp_path))
    with pytest.raises(ValueError, match=r"tok-base/vocab\.txt has 30522 entries: an extended vocab must exceed"):
        adapt(pipe, "exbert", "base", train_config(tmp_path))
    assert not (tmp_path / "work").exists()  # every error comes before training starts
