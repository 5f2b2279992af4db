"""NER fine-tuning and evaluation of any BERT-family model on the engine (docs/design.md decisions 3 and 7).

    result = finetune_and_evaluate(name="exBERT", source="results/train/adapt_exbert/teacher", role="teacher",
                                   dataset="BC5CDR-IOB", data_dir="results/ner/BC5CDR-IOB", seed=1,
                                   settings=config["finetune"], output_dir=..., work_dir=...)

`source`: a folder the workflow made (model_type exbert), a local plain BERT folder, a hub id, or
`pkg:<module>/<path>`; the tokenizer comes from the same place unless `tokenizer_source` names another (a published
checkpoint's tokenizer with its configured casing: a hub repo without tokenizer_config.json loads lowercased). `data_dir`: train/devel/test.tsv and labels.json
as rule ner_data writes them. `settings` (config `finetune`): epochs {teacher, student}, lr, batch_size,
per_device_batch_size, weight_decay, warmup_ratio, max_length, group_by_length, precision, seqeval_mode,
seqeval_scheme, keep_model, log_every, checkpoint_every, and protocol (`standard` when absent).

`protocol: standard`, this library's recipe:

- Labels go on the first sub-word of each word (-100 on the other pieces and the specials); a word that the
  tokenizer turns into no piece becomes [UNK], so every word has a first piece.
- A sentence longer than the window (max_length pieces with [CLS] and [SEP]) is cut into windows of whole words,
  each next window starting where half of the previous one's pieces remain; every word is owned by the window
  where it has the most context (its distance in pieces to the nearer window edge is largest), and only there
  is it trained and predicted: every word gets exactly one prediction.
- Training: the engine (AdamW, weight decay 0.01 except biases and LayerNorm, 10% warmup + linear decay,
  dynamic padding, length-grouped batches); the seed fixes the head's init, dropout and data order. An
  interrupted job resumes its checkpoints in work_dir only if nothing they depend on changed: the engine's
  settings, the sha256 of the model's config and weights, of the tokenizer files and of train.tsv, the labels and
  max_length (devel and test are read afresh after training); otherwise it starts over, naming what changed.
- Evaluation of the last-epoch model on devel and test: seqeval entity-level P/R/F1 (overall and per type), the
  token-level macro F1 over first sub-words with O as a class, and the predictions as CoNLL text (token, gold,
  predicted) that conlleval can rescore. Also the authors' piece-level macro F1 (below), with each word's
  prediction standing for each of its pieces.

`protocol: authors`, the EDAD authors' `Finetuning_NER.py` (the paper's F1 figures; docs/design.md, decision
"The authors' NER protocol"):
- every piece of a word carries the word's label (a B- tag too), and every piece is trained;
- one input per sentence: [CLS], its first max_length - 2 pieces, [SEP] (no windows; a word whose first piece
  is cut off is neither trained nor scored, and counts as predicted O in the entity F1); [CLS] and [SEP] are
  hidden from attention (the script's attention mask covers the pieces only);
- BertAdam (eps 1e-6, no bias correction, each tensor's gradient clipped to 1) at a constant learning rate;
- metrics[split]["piece_macro_f1"]: scikit-learn's macro F1 over every labelled piece, O counted as a class;
  the entity and first-piece metrics as above, from the first piece of each word.
Both protocols drop the last incomplete batch of an epoch (the engine) and evaluate the last epoch's model.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from seqeval.metrics import classification_report
from seqeval.scheme import IOB1, IOB2, IOBES
from sklearn.metrics import f1_score
from torch.nn.utils.rnn import pad_sequence
from transformers import AutoConfig, AutoTokenizer

from edad_core.checkpointing import tokenizer_sha256, weights_sha256
from edad_core.download import resolve_model
from edad_core.engine import Engine, TrainConfig
from edad_core.files import atomic_dir, atomic_write_json, atomic_write_text, sha256_file
from edad_core.modeling import ExBertForTokenClassification
from edad_core.ner_data import read_iob
from edad_core.windows import (  # noqa: F401  (word_pieces: tests)
    Window, encode, encode_cut, padded_batches, word_pieces)

log = logging.getLogger(__name__)

SCHEMES = {"IOB1": IOB1, "IOB2": IOB2, "IOBES": IOBES}
SPLITS = ("train", "devel", "test")
# finetune.protocol -> the engine's optimizer, clipping and learning-rate schedule (the module docstring)
PROTOCOLS = {
    "standard": dict(optimizer="adamw", adam_eps=1e-8, clip_mode="global", lr_schedule="linear_warmup"),
    "authors": dict(optimizer="bert_adam", adam_eps=1e-6, clip_mode="per_tensor", lr_schedule="constant"),
}


def window_labels(win: Window, tags: list[int], every_piece: bool = False) -> list[int]:
    """A label per position of the window: each owned word's tag on its first piece, or on all its pieces
    (every_piece), -100 elsewhere."""
    labels = [-100] * len(win.input_ids)
    ends = win.first_piece[1:] + [len(win.input_ids) - 1]  # a word's pieces end where the next one's start ([SEP])
    for w in win.owned:
        start = win.first_piece[w - win.start]
        end = ends[w - win.start] if every_piece else start + 1
        labels[start:end] = [tags[w]] * (end - start)
    return labels


class TokenDataset(torch.utils.data.Dataset):
    """Windows with labels on the first piece of each owned word, or on all its pieces (every_piece)."""

    def __init__(self, windows_: list[Window], tags: list[list[int]], every_piece: bool = False):
        self.items = [(torch.tensor(win.input_ids), torch.tensor(window_labels(win, tags[win.sentence], every_piece)))
                      for win in windows_]
        self.lengths = np.array([len(ids) for ids, _ in self.items])

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def attention_mask(lengths: list[int], hide_specials: bool = False) -> torch.Tensor:
    """1 on each input's tokens, 0 on padding; hide_specials: 0 on [CLS] and [SEP] too (Finetuning_NER.py)."""
    mask = pad_sequence([torch.ones(n, dtype=torch.long) for n in lengths], batch_first=True)
    if hide_specials:
        rows = torch.arange(len(lengths))
        mask[rows, 0] = 0
        mask[rows, torch.tensor(lengths) - 1] = 0
    return mask


def collate(examples, pad_id: int, hide_specials: bool = False) -> dict[str, torch.Tensor]:
    """Dynamic padding to the longest example of the batch."""
    ids = pad_sequence([ids for ids, _ in examples], batch_first=True, padding_value=pad_id)
    mask = attention_mask([len(ids) for ids, _ in examples], hide_specials)
    labels = pad_sequence([lab for _, lab in examples], batch_first=True, padding_value=-100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def token_step(models, batch, ctx):
    out = models["model"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return {"model": out.loss}, {}


def load_model(source: str, labels: list[str], tokenizer_source: str | None = None
               ) -> tuple[ExBertForTokenClassification, object]:
    """A token-classification model with a fresh head of len(labels) classes, and its tokenizer (or the one of
    `tokenizer_source`)."""
    folder = resolve_model(source)
    head = dict(num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    if AutoConfig.from_pretrained(folder).model_type == "exbert":
        model = ExBertForTokenClassification.from_pretrained(folder, **head)
    else:
        model = ExBertForTokenClassification.from_bert(folder, **head)
    return model, AutoTokenizer.from_pretrained(resolve_model(tokenizer_source) if tokenizer_source else folder)


@torch.no_grad()
def predict_windows(model, windows_: list[Window], batch_size: int, device, pad_id: int, hide_specials: bool = False
                    ) -> list[torch.Tensor]:
    """The predicted label id at every position of every window (batches of the longest inputs first)."""
    model.eval()
    best = [None] * len(windows_)
    index = {id(win): i for i, win in enumerate(windows_)}
    for chunk, ids, mask in padded_batches(windows_, batch_size, pad_id, hide_specials):  # the tagger's batches
        logits = model(input_ids=torch.from_numpy(ids).to(device),
                       attention_mask=torch.from_numpy(mask).to(device)).logits
        for win, row in zip(chunk, logits.argmax(-1).cpu()):
            best[index[id(win)]] = row
    return best


def word_predictions(windows_: list[Window], best: list[torch.Tensor], sentences: list[list[str]]
                     ) -> list[list[int]]:
    """One label id per word, from the first piece in the window that owns it; -1 for a word no window owns."""
    preds = [[-1] * len(words) for words in sentences]
    for win, row in zip(windows_, best):
        for w in win.owned:
            preds[win.sentence][w] = int(row[win.first_piece[w - win.start]])
    return preds


def predict(model, windows_: list[Window], sentences: list[list[str]], batch_size: int, device, pad_id: int,
            hide_specials: bool = False) -> list[list[int]]:
    """One label id per word of every sentence, each from the window that owns it."""
    return word_predictions(windows_, predict_windows(model, windows_, batch_size, device, pad_id, hide_specials),
                            sentences)


def piece_pairs(windows_: list[Window], best: list[torch.Tensor], tags: list[list[int]]
                ) -> tuple[list[int], list[int]]:
    """Gold and predicted label id of every piece of the owned words, as Finetuning_NER.py scores them."""
    gold, pred = [], []
    for win, row in zip(windows_, best):
        labels = torch.tensor(window_labels(win, tags[win.sentence], every_piece=True))
        kept = labels != -100
        gold.extend(labels[kept].tolist())
        pred.extend(row[: len(labels)][kept].tolist())
    return gold, pred


def piece_macro_f1(gold: list[int], pred: list[int]) -> float:
    """The authors' metric: scikit-learn's macro F1 over the labelled pieces, O counted as a class (the classes
    present in gold or predictions, as f1_score takes them)."""
    return float(f1_score(gold, pred, average="macro", zero_division=0))


def token_macro_f1(gold: list[int], pred: list[int], n_labels: int) -> float:
    """Macro F1 over labelled first sub-words with O as a class (scikit-learn's f1_score(average="macro") over
    the classes present in gold or predictions)."""
    gold, pred = np.asarray(gold), np.asarray(pred)
    f1s = []
    for c in range(n_labels):
        tp, fp, fn = np.sum((pred == c) & (gold == c)), np.sum((pred == c) & (gold != c)), np.sum((pred != c) & (gold == c))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def evaluate(gold_tags: list[list[str]], pred_tags: list[list[str]], labels: list[str], mode, scheme) -> dict:
    report = classification_report(gold_tags, pred_tags, mode=mode, scheme=SCHEMES[scheme] if mode else None,
                                   output_dict=True, zero_division=0)
    micro = report["micro avg"]
    index = {l: i for i, l in enumerate(labels)}
    flat_gold = [index[t] for tags in gold_tags for t in tags]
    flat_pred = [index[t] for tags in pred_tags for t in tags]
    return {
        "entity": {"precision": micro["precision"], "recall": micro["recall"], "f1": micro["f1-score"],
                   "per_type": {t: {"precision": r["precision"], "recall": r["recall"], "f1": r["f1-score"],
                                    "support": int(r["support"])}
                                for t, r in report.items() if not t.endswith(" avg")}},
        "token_macro_f1": token_macro_f1(flat_gold, flat_pred, len(labels)),
    }


def conll(sentences, gold_tags, pred_tags) -> str:
    return "".join("".join(f"{w} {g} {p}\n" for w, g, p in zip(*s)) + "\n" for s in zip(sentences, gold_tags, pred_tags))


def finetune_and_evaluate(*, name: str, source: str, role: str, dataset: str, data_dir, seed: int, settings: dict,
                          output_dir, work_dir, tokenizer_source: str | None = None) -> dict:
    output_dir, work_dir = Path(output_dir), Path(work_dir)
    labels = json.loads((Path(data_dir) / "labels.json").read_text())["label_names"]
    index = {l: i for i, l in enumerate(labels)}
    splits = {s: read_iob(Path(data_dir) / f"{s}.tsv") for s in SPLITS}
    protocol = settings.get("protocol", "standard")
    if protocol not in PROTOCOLS:
        raise ValueError(f"finetune.protocol = {protocol!r}: must be one of {list(PROTOCOLS)}")
    authors = protocol == "authors"
    torch.manual_seed(seed)  # the head's initialisation
    model, tokenizer = load_model(source, labels, tokenizer_source)
    max_length = settings["max_length"]
    encoded = {s: (encode_cut if authors else encode)(tokenizer, [w for w, _ in sents], max_length)
               for s, sents in splits.items()}
    tag_ids = {s: [[index[t] for t in tags] for _, tags in sents] for s, sents in splits.items()}
    train_set = TokenDataset(encoded["train"], tag_ids["train"], every_piece=authors)
    cfg = TrainConfig(
        output_dir=str(output_dir), work_dir=str(work_dir), lr=settings["lr"][role], epochs=settings["epochs"][role],
        batch_size=settings["batch_size"], per_device_batch_size=settings["per_device_batch_size"],
        **PROTOCOLS[protocol], warmup_ratio=settings["warmup_ratio"], weight_decay=settings["weight_decay"],
        precision=settings["precision"], checkpoint_every=settings["checkpoint_every"],
        log_every=settings["log_every"], seed=seed, group_by_length=settings["group_by_length"],
        keep_final_checkpoint=False)
    pad_id = tokenizer.pad_token_id
    # what the checkpoints depend on beyond the engine's settings: the files read, by content (not by path)
    model_dir = resolve_model(source)
    tokenizer_dir = resolve_model(tokenizer_source) if tokenizer_source else model_dir
    fingerprint = {"source_sha256": weights_sha256(model_dir), "tokenizer_sha256": tokenizer_sha256(tokenizer_dir),
                   "labels": labels, "train_sha256": sha256_file(Path(data_dir) / "train.tsv"),
                   "max_length": max_length, "protocol": protocol}
    with Engine(cfg, {"model": model}, ["model"], train_set, lambda b: collate(b, pad_id, authors), token_step,
                lengths=train_set.lengths, fingerprint=fingerprint) as engine:
        summary = engine.train()
        if not engine.is_main:
            return summary
        device = engine.dist.device
    result = {"name": name, "source": source, "tokenizer": tokenizer_source or source, "role": role, "dataset": dataset, "seed": seed,
              "protocol": protocol,
              "epochs": settings["epochs"][role], "lr": settings["lr"][role], "params": sum(p.numel() for p in model.parameters()),
              "train_seconds": summary["train_seconds"],
              "train_examples_per_s": len(train_set) * cfg.epochs / summary["train_seconds"],
              "settings": settings, "metrics": {}, "skipped": None}
    for split in ("devel", "test"):
        words = [w for w, _ in splits[split]]
        gold = [tags for _, tags in splits[split]]
        start = time.perf_counter()
        best = predict_windows(model, encoded[split], settings["per_device_batch_size"], device, pad_id, authors)
        pred_ids = word_predictions(encoded[split], best, words)
        result[f"{split}_inference_seconds"] = time.perf_counter() - start
        pred = [[labels[i] if i >= 0 else "O" for i in row] for row in pred_ids]  # -1: a word past the cut
        result["metrics"][split] = evaluate(gold, pred, labels, settings["seqeval_mode"], settings["seqeval_scheme"])
        if authors:
            gold_pieces, pred_pieces = piece_pairs(encoded[split], best, tag_ids[split])
            result["metrics"][split]["words_cut"] = sum(row.count(-1) for row in pred_ids)
        else:  # one prediction per word: it stands for each of the word's pieces
            counts = [len(p) for sentence in word_pieces(tokenizer, words) for p in sentence]
            gold_pieces = np.repeat([t for row in tag_ids[split] for t in row], counts)
            pred_pieces = np.repeat([t for row in pred_ids for t in row], counts)
        result["metrics"][split].update(piece_macro_f1=piece_macro_f1(gold_pieces, pred_pieces),
                                        pieces=len(gold_pieces))
        atomic_write_text(output_dir / f"predictions-{split}.conll", conll(words, gold, pred))
    result["inference_examples_per_s"] = len(splits["test"]) / result["test_inference_seconds"]
    if settings["keep_model"]:
        with atomic_dir(output_dir / "model") as folder:  # whole or not at all
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
    elif (output_dir / "model").exists():
        shutil.rmtree(output_dir / "model")
    atomic_write_json(output_dir / "result.json", result, indent=2)  # last: marks a complete run
    return result
