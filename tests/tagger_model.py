"""A tiny exBERT (extension vocabulary, extension layers and gates) fine-tuned on real BC5CDR sentences of the
mirror, its model kept: what the tagger, export and ONNX tests run on (tests/conftest.py: fixture tagger_run)."""

import json
from pathlib import Path

import torch
from transformers import AutoTokenizer

from edad_core.modeling import ExBertConfig, ExBertModel
from edad_core.ner import finetune_and_evaluate
from edad_core.ner_data import read_iob, write_iob
from edad_core.vocab import build_extended_vocab

BC5CDR = ("raw.githubusercontent.com/cambridgeltl/MTL-Bioinformatics-2016/df0df02fae6dbb87d88ffcf323b9096528f06f84/"
          "data/BC5CDR-IOB")
SIZES = {"train": 160, "devel": 40, "test": 300}
# one epoch at a small lr: the head stays near its random start, so the predictions mix every label (B, I, orphan
# I-X, O): a hard case for decoding, not a good tagger
SETTINGS = {"epochs": {"teacher": 1, "student": 1}, "lr": {"teacher": 1e-5, "student": 1e-5},
            "batch_size": 16, "per_device_batch_size": 16, "weight_decay": 0.01, "warmup_ratio": 0.1,
            "max_length": 48, "group_by_length": True, "precision": "fp32", "seqeval_mode": "strict",
            "seqeval_scheme": "IOB2", "keep_model": True, "log_every": 50, "checkpoint_every": 1000}


def make_tagger_run(root: Path, mirror: Path, minilm: Path, seed: int = 1) -> Path:
    """The fine-tuning run's output folder (result.json, predictions-*.conll, model/)."""
    data = root / "data"
    data.mkdir(parents=True)
    for split, n in SIZES.items():
        write_iob(read_iob(mirror / BC5CDR / f"{split}.tsv")[:n], data / f"{split}.tsv")
    labels = sorted({t for w, tags in read_iob(data / "train.tsv") for t in tags}, key=lambda t: (t != "O", t))
    (data / "labels.json").write_text(json.dumps({"label_names": labels}))
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(w) for w, _ in read_iob(data / "train.tsv")) + "\n")
    vocab = build_extended_vocab([corpus], str(minilm), root / "vocab", ext_size=200, total_size=30722)
    torch.manual_seed(0)
    config = ExBertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=64, ext_vocab_size=200, ext_hidden_size=8,
                          ext_intermediate_size=16, ext_num_attention_heads=2)
    source = root / "student"
    ExBertModel(config).save_pretrained(source)
    AutoTokenizer.from_pretrained(vocab).save_pretrained(source)
    out = root / "run"
    finetune_and_evaluate(name="EDAD_linear", source=str(source), role="student", dataset="BC5CDR-IOB",
                          data_dir=data, seed=seed, settings=SETTINGS, output_dir=out, work_dir=root / "work")
    return out
